"""SimulatorState: the simulator's accounts, credits, batches, limits and request log, on an injected clock.

Every Bouncer rule lives here as a method the HTTP layer (`app.py`) calls after parsing: authentication,
rate limits and 503 injection (`admit`), credit reservation at create, settlement at completion and refunds
on finish. Failures are raised as `SimulatorHTTPError(status, message)`, which the app renders in Bouncer's
error shape. Nothing here is module-global: each test builds its own state with its own clock.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from bouncer_queue.emails import dedup_key
from bouncer_queue.simulator.batches import COMPLETED, PROCESSING, QUEUED, STATUSES, Batch, advance, settle
from bouncer_queue.simulator.config import SimulatorConfig
from bouncer_queue.simulator.ratelimit import SlidingWindows
from bouncer_queue.simulator.results import expected_result, is_sandbox

Clock = Callable[[], float]
DOWNLOAD_FILTERS = ("all", *STATUSES)
RATE_GROUPS = ("batch", "create", "credits", "verify")


class SimulatorHTTPError(Exception):
    """A Bouncer error answer: HTTP status and Bouncer's lower-case message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message


def fingerprint(key: str) -> str:
    """A short, stable stand-in for an API key in introspection output."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class SimulatorState:
    """Everything the simulator remembers; `clock` returns epoch seconds (inject a fake one in tests)."""

    def __init__(self, config: SimulatorConfig | None = None, *, clock: Clock = time.time) -> None:
        self.config = config or SimulatorConfig()
        self.clock = clock
        self.requests: list[dict[str, Any]] = []
        self.batch_creations = 0
        self._balances: dict[str, int] = {}
        self._batches: dict[str, Batch] = {}
        self._windows = SlidingWindows()
        self._request_counter = 0
        self._callbacks: list[tuple[str, dict[str, Any]]] = []

    def __repr__(self) -> str:
        return f"SimulatorState(batches={len(self._batches)}, accounts={len(self._balances)})"

    # Accounts, limits, injected failures

    def authenticate(self, key: str | None) -> str:
        """The key itself when it is accepted; 401 "user not found" otherwise."""
        allowed = self.config.api_keys
        if not key or (allowed and key not in allowed):
            raise SimulatorHTTPError(401, "user not found")
        self._balances.setdefault(key, self.config.credits)
        return key

    def admit(self, key: str, group: str) -> None:
        """Count one request of `group` against the key's window (429), and maybe inject a 503."""
        self._request_counter += 1
        if self._injected_failure(self._request_counter):
            raise SimulatorHTTPError(503, "service unavailable")
        limit = {
            "batch": self.config.batch_limit,
            "create": self.config.create_limit,
            "credits": self.config.credits_limit,
            "verify": self.config.verify_limit,
        }[group]
        if not self._windows.admit(key, group, now=self.clock(), limit=limit, window=self.config.window_seconds):
            raise SimulatorHTTPError(429, "too many requests")

    def _injected_failure(self, counter: int) -> bool:
        if self.config.fail_rate <= 0:
            return False
        digest = hashlib.sha256(f"{self.config.seed}\x00fail\x00{counter}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.config.fail_rate

    def credits_of(self, key: str) -> int:
        return self._balances.setdefault(key, self.config.credits)

    def set_credits(self, key: str, credits: int) -> None:
        self._balances[key] = credits

    # Batches

    def create_batch(self, key: str, entries: Sequence[tuple[str, str | None]], callback: str | None) -> dict[str, Any]:
        """Create a batch from (email, name) pairs: dedupe, check and reserve credits; the batch object."""
        if not entries:
            raise SimulatorHTTPError(400, "batch is empty")
        if len(entries) > self.config.max_batch_size:
            raise SimulatorHTTPError(400, "too many emails")
        unique: dict[str, tuple[str, str | None]] = {}
        for email, name in entries:
            unique.setdefault(dedup_key(email), (email.strip(), name))
        duplicates = len(entries) - len(unique)
        now = self.clock()
        results = [expected_result(email, self.config.seed, name=name, now=now) for email, name in unique.values()]
        chargeable = [not is_sandbox(email) for email, _ in unique.values()]
        extra = duplicates if self.config.charge_duplicates else 0
        cost = sum(chargeable) + extra
        balance = self.credits_of(key)
        if cost > balance:
            raise SimulatorHTTPError(402, f"{balance} credits left")
        self._balances[key] = balance - cost
        batch = Batch(secrets.token_hex(12), key, now, results, chargeable, duplicates, cost, callback)
        batch.extra_charge = extra
        self._batches[batch.id] = batch
        self.batch_creations += 1
        return batch.view(now, self.config.speed, with_stats=False)

    def batch_status(self, key: str, batch_id: str, *, with_stats: bool) -> dict[str, Any]:
        batch = self._batch(key, batch_id)
        return batch.view(self.clock(), self.config.speed, with_stats=with_stats)

    def download(self, key: str, batch_id: str, kind: str) -> list[dict[str, Any]]:
        """The results of a completed batch, filtered by status (`kind` = all or one status)."""
        if kind not in DOWNLOAD_FILTERS:
            raise SimulatorHTTPError(400, f"invalid download value, use one of: {', '.join(DOWNLOAD_FILTERS)}")
        batch = self._batch(key, batch_id)
        if batch.status != COMPLETED:
            raise SimulatorHTTPError(400, "batch is not completed yet")
        results = batch.results[: batch.verified]
        if self.config.finish_returns_unknown:
            results = results + [_unverified(r) for r in batch.results[batch.verified :]]
        return [r for r in results if kind in ("all", r["status"])]

    def finish(self, key: str, batch_id: str) -> None:
        """Stop a queued or processing batch now; the unverified emails are refunded at settlement."""
        batch = self._batch(key, batch_id)
        if batch.status not in (QUEUED, PROCESSING):
            raise SimulatorHTTPError(400, "batch has to be running to finish")
        now = self.clock()
        batch.stopped_at = batch.processed(now, self.config.speed)
        batch.started = batch.started if batch.started is not None else now
        batch.status, batch.completed = COMPLETED, now
        self._on_complete(batch)

    def delete(self, key: str, batch_id: str) -> None:
        batch = self._batch(key, batch_id)
        if batch.status != COMPLETED:
            raise SimulatorHTTPError(405, "batch cannot be deleted in current state")
        del self._batches[batch.id]

    def _batch(self, key: str, batch_id: str) -> Batch:
        self.advance()
        batch = self._batches.get(batch_id)
        if batch is None or batch.key != key:
            raise SimulatorHTTPError(404, f"request {batch_id} does not exist")
        return batch

    def advance(self) -> None:
        """Bring every batch up to the clock (starts, completions, settlements, callbacks)."""
        now = self.clock()
        by_key: dict[str, list[Batch]] = {}
        for batch in self._batches.values():
            by_key.setdefault(batch.key, []).append(batch)
        for batches in by_key.values():
            advance(
                batches,
                now,
                speed=self.config.speed,
                max_parallel=self.config.max_parallel,
                queue_delay=self.config.queue_delay_seconds,
                on_complete=self._on_complete,
            )

    def _on_complete(self, batch: Batch) -> None:
        refund = settle(batch, charge_unknown=self.config.charge_unknown)
        self._balances[batch.key] = self.credits_of(batch.key) + refund
        if batch.callback:
            self._callbacks.append((batch.callback, batch.view(self.clock(), self.config.speed, with_stats=True)))

    def take_callbacks(self) -> list[tuple[str, dict[str, Any]]]:
        """The (url, final batch object) callbacks due since the last call."""
        self.advance()
        due, self._callbacks = self._callbacks, []
        return due

    # Real-time verify

    def verify(self, key: str, email: str, *, timeout: int, with_toxicity: bool) -> dict[str, Any]:
        """One real-time result; 1 credit (+1 with toxicity), sandbox addresses free."""
        cost = 0 if is_sandbox(email) else 1 + int(with_toxicity)
        balance = self.credits_of(key)
        if cost > balance:
            raise SimulatorHTTPError(402, f"{balance} credits left")
        self._balances[key] = balance - cost
        result = expected_result(email, self.config.seed, realtime=True, timeout=timeout, now=self.clock())
        if with_toxicity:
            result["toxic"] = "yes" if result.get("toxicity", 0) >= 3 else "no"
        return result

    # Introspection

    def record_request(self, method: str, path: str, status: int, key: str | None = None) -> None:
        """Log one request; the key only as its fingerprint, so tests can tell which key was used."""
        record = {"method": method, "path": path, "status": status, "time": self.clock()}
        record["key"] = fingerprint(key) if key else None
        self.requests.append(record)

    def snapshot(self) -> dict[str, Any]:
        """Credits per key fingerprint, batches and counters; never the keys themselves."""
        self.advance()
        now = self.clock()
        batches = [
            {"id": b.id, "key": fingerprint(b.key), "status": b.status, "quantity": b.quantity,
             "processed": b.processed(now, self.config.speed), "credits": b.credits_used}
            for b in self._batches.values()
        ]  # fmt: skip
        return {
            "credits": {fingerprint(key): balance for key, balance in self._balances.items()},
            "batches": batches,
            "batch_creations": self.batch_creations,
            "processing": sum(1 for b in self._batches.values() if b.status == PROCESSING),
        }


def _unverified(result: dict[str, Any]) -> dict[str, Any]:
    """A result that finish stopped before verification, as `unknown` (finish_returns_unknown)."""
    stub = {"email": result["email"], "status": "unknown", "reason": "unknown"}
    if "name" in result:
        stub["name"] = result["name"]
    return stub
