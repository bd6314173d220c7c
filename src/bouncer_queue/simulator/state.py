"""SimulatorState: the simulator's accounts, credits, batches, limits and request log, on an injected clock.

Every Bouncer rule lives here as a method the HTTP layer (`app.py`) calls after parsing: authentication,
rate limits and 503 injection (`admit`), credit reservation at create (and whether its answer is dropped),
settlement at completion and refunds
on finish or failure (`batch_fail_rate`), real-time verify (and how long it takes), batch-sync with its per-key
result cache, the domain check and toxicity lists. Failures are raised as `SimulatorHTTPError(status, message)`,
which the app renders in Bouncer's error shape. Nothing here is module-global: each test builds its own state
with its own clock.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from bouncer_queue.emails import dedup_key
from bouncer_queue.simulator import toxicity
from bouncer_queue.simulator.batches import (
    COMPLETED,
    FAILED,
    PROCESSING,
    QUEUED,
    STATUSES,
    Batch,
    advance,
    json_text,
    settle,
)
from bouncer_queue.simulator.cache import ResultCache
from bouncer_queue.simulator.config import SimulatorConfig
from bouncer_queue.simulator.latency import latency_seconds, wait_seconds
from bouncer_queue.simulator.ratelimit import SlidingWindows
from bouncer_queue.simulator.results import SANDBOX_DOMAIN, expected_domain, expected_result, is_sandbox

Clock = Callable[[], float]
DOWNLOAD_FILTERS = ("all", *STATUSES)
RATE_GROUPS = ("batch", "create", "credits", "verify", "sync", "domain", "toxicity", "toxicity_read")
#: How far ahead of a running batch's progress its results are drawn, in seconds of its processing.
VERDICT_LOOKAHEAD_SECONDS = 1.0


class SimulatorHTTPError(Exception):
    """A Bouncer error answer: HTTP status, Bouncer's lower-case message and any extra response headers."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.headers = headers


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
        self._sync_cache = ResultCache(self.config.sync_cache_seconds)
        self._toxicity = toxicity.ToxicityLists()

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
        if self._drawn("fail", self._request_counter, self.config.fail_rate):
            raise SimulatorHTTPError(503, "service unavailable")
        now, window = self.clock(), self.config.window_seconds
        if not self._windows.admit(key, group, now=now, limit=self._limit(group), window=window):
            raise SimulatorHTTPError(429, "too many requests", headers=self._retry_after(key, group, now))

    def _limit(self, group: str) -> int:
        config = self.config
        return {
            "batch": config.batch_limit,
            "create": config.create_limit,
            "credits": config.credits_limit,
            "verify": config.verify_limit,
            "sync": config.sync_limit,
            "domain": config.domain_limit,
            "toxicity": config.toxicity_limit,
            "toxicity_read": config.batch_limit,
        }[group]

    def _retry_after(self, key: str, group: str, now: float) -> dict[str, str] | None:
        if not self.config.retry_after_header:
            return None
        seconds = self._windows.retry_after(key, group, now=now, window=self.config.window_seconds)
        return {"Retry-After": str(max(1, math.ceil(seconds)))}

    def _drawn(self, kind: str, counter: int, rate: float) -> bool:
        """A reproducible draw with probability `rate`, from the seed, the kind of failure and a counter."""
        if rate <= 0:
            return False
        digest = hashlib.sha256(f"{self.config.seed}\x00{kind}\x00{counter}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < rate

    def credits_of(self, key: str) -> int:
        return self._balances.setdefault(key, self.config.credits)

    def set_credits(self, key: str, credits: int) -> None:
        self._balances[key] = credits

    def _charge(self, key: str, cost: int, message: str | None = None) -> None:
        """Take `cost` credits, or refuse with 402 (default message "<balance> credits left")."""
        balance = self.credits_of(key)
        if cost > balance:
            raise SimulatorHTTPError(402, message or f"{balance} credits left")
        self._balances[key] = balance - cost

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
        seed = self.config.seed

        def verdict(email: str, name: str | None) -> dict[str, Any]:
            return expected_result(email, seed, name=name, now=now)

        pairs = list(unique.values())
        chargeable = [not is_sandbox(email) for email, _ in pairs]
        extra = duplicates if self.config.charge_duplicates else 0
        cost = sum(chargeable) + extra
        balance = self.credits_of(key)
        if cost > balance:
            raise SimulatorHTTPError(402, f"{balance} credits left")
        self._balances[key] = balance - cost
        batch = Batch(secrets.token_hex(12), key, now, pairs, verdict, chargeable, duplicates, cost, callback)
        batch.extra_charge = extra
        self.batch_creations += 1
        batch.fails = self._drawn("batch-fail", self.batch_creations, self.config.batch_fail_rate)
        batch.answer_dropped = self._drawn("drop-create", self.batch_creations, self.config.drop_create_response_rate)
        self._batches[batch.id] = batch
        return batch.view(now, self.config.speed, with_stats=False)

    def compute_verdicts(self, count: int) -> bool:
        """Draw up to `count` more result objects of the batches under way, oldest first, each no further than
        VERDICT_LOOKAHEAD_SECONDS of processing ahead of its progress; True while more are due now.

        The work is spread over a batch's run, as Bouncer's own is, instead of done when it is created: drawing a
        10,000-address batch takes some 0.2 s of a core, and fifteen drawn at once while a list is being stored
        took that core from the system measured, which shares the machine with the simulator. What is not drawn
        yet when it is needed (a status's stats, a download) is drawn then, with the same results."""
        self.advance()
        now, speed = self.clock(), self.config.speed
        ahead = int(speed * VERDICT_LOOKAHEAD_SECONDS)
        due = False
        for batch in self._batches.values():
            if batch.computed >= batch.quantity or batch.started is None or batch.status == FAILED:
                continue
            target = min(batch.quantity, batch.processed(now, speed) + ahead)
            if batch.computed < target:
                take = min(count, target - batch.computed)
                batch.compute(batch.computed + take)
                count -= take
                due = due or batch.computed < target
            if count == 0:
                return True
        return due

    def answer_dropped(self, batch_id: str) -> bool:
        """Whether the create of this batch is answered by closing the connection (drop_create_response_rate)."""
        batch = self._batches.get(batch_id)
        return batch is not None and batch.answer_dropped

    def batch_status(self, key: str, batch_id: str, *, with_stats: bool) -> dict[str, Any]:
        batch = self._batch(key, batch_id)
        return batch.view(self.clock(), self.config.speed, with_stats=with_stats)

    def download(self, key: str, batch_id: str, kind: str) -> list[dict[str, Any]]:
        """The results of a completed batch, filtered by status (`kind` = all or one status)."""
        batch = self._downloadable(key, batch_id, kind)
        results = batch.results[: batch.verified]
        if self.config.finish_returns_unknown:
            results = results + [_unverified(r) for r in batch.results[batch.verified :]]
        return [r for r in results if kind in ("all", r["status"])]

    def download_json(self, key: str, batch_id: str, kind: str) -> bytes:
        """`download` as the JSON body the API sends, byte for byte, from the texts made with the results."""
        batch = self._downloadable(key, batch_id, kind)
        texts = batch.texts_upto(batch.verified)
        if kind != "all":
            texts = [t for t, r in zip(texts, batch.results, strict=False) if r["status"] == kind]
        if self.config.finish_returns_unknown:
            stubs = [_unverified(r) for r in batch.results[batch.verified :]]
            texts = texts + [json_text(r) for r in stubs if kind in ("all", r["status"])]
        return ("[" + ",".join(texts) + "]").encode()

    def _downloadable(self, key: str, batch_id: str, kind: str) -> Batch:
        if kind not in DOWNLOAD_FILTERS:
            raise SimulatorHTTPError(400, f"invalid download value, use one of: {', '.join(DOWNLOAD_FILTERS)}")
        batch = self._batch(key, batch_id)
        if batch.status != COMPLETED:
            raise SimulatorHTTPError(400, "batch is not completed yet")
        return batch

    def finish(self, key: str, batch_id: str) -> None:
        """Stop a queued or processing batch now; the unverified emails are refunded at settlement."""
        batch = self._batch(key, batch_id)
        if batch.status not in (QUEUED, PROCESSING):
            raise SimulatorHTTPError(400, "batch has to be running to finish")
        now = self.clock()
        batch.stopped_at = batch.processed(now, self.config.speed)
        batch.started = batch.started if batch.started is not None else now
        batch.status, batch.completed = COMPLETED, now
        self._on_end(batch)

    def delete(self, key: str, batch_id: str) -> None:
        batch = self._batch(key, batch_id)
        if batch.status not in (COMPLETED, FAILED):
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
                on_end=self._on_end,
            )

    def _on_end(self, batch: Batch) -> None:
        """Settle a completed batch, or refund a failed one in full; queue its callback."""
        if batch.status == FAILED:
            refund = batch.reserved
        else:
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
        self._charge(key, 0 if is_sandbox(email) else 1 + int(with_toxicity))
        result = expected_result(email, self.config.seed, realtime=True, timeout=timeout, now=self.clock())
        if with_toxicity:
            result["toxic"] = "yes" if result.get("toxicity", 0) >= 3 else "no"
        return result

    def realtime_wait(self, result: dict[str, Any], *, timeout: int) -> float:
        """Seconds (scaled by `latency_scale`) the real-time answer `result` takes to arrive."""
        latency = latency_seconds(result["email"], self.config.seed)
        return wait_seconds(result, latency, timeout, self.config.latency_scale)

    # Batch-sync and domain

    def verify_sync(self, key: str, emails: Sequence[str]) -> list[dict[str, Any]]:
        """Batch-sync results in request order; cached addresses (per key, within the TTL) cost nothing."""
        if not emails:
            raise SimulatorHTTPError(400, "no emails provided")
        if len(emails) > self.config.max_sync_size:
            raise SimulatorHTTPError(400, "too many emails")
        now = self.clock()
        answers = [self._sync_cache.get(key, email, now=now) for email in emails]
        fresh: dict[str, dict[str, Any]] = {}
        for email, cached in zip(emails, answers, strict=True):
            if cached is None:
                fresh.setdefault(dedup_key(email), expected_result(email, self.config.seed, now=now))
        self._charge(key, sum(self._charged(result) for result in fresh.values()))
        for result in fresh.values():
            self._sync_cache.put(key, result["email"], result, now=now)
        return [
            cached or {**fresh[dedup_key(email)], "email": email.strip()}
            for email, cached in zip(emails, answers, strict=True)
        ]

    def _charged(self, result: dict[str, Any]) -> bool:
        return not is_sandbox(result["email"]) and (self.config.charge_unknown or result["status"] != "unknown")

    def verify_domain(self, key: str, domain: str) -> dict[str, Any]:
        """GET /v1.1/domain: 1 credit (the sandbox domain is free), `{"domain": {...}}`."""
        name = domain.strip()
        if not name:
            raise SimulatorHTTPError(400, "domain is required")
        self._charge(key, 0 if name.lower() == SANDBOX_DOMAIN else 1)
        return expected_domain(name, self.config.seed)

    # Toxicity lists

    def create_toxicity_list(self, key: str, emails: Sequence[str]) -> dict[str, Any]:
        """Start a toxicity job over the unique addresses; 1 credit each (sandbox free), refunded on `error`."""
        if not emails:
            raise SimulatorHTTPError(400, "no emails provided")
        if len(emails) > self.config.max_batch_size:
            raise SimulatorHTTPError(400, "too many emails")
        first_spelling: dict[str, str] = {}
        for email in emails:
            first_spelling.setdefault(dedup_key(email), email.strip())
        unique = list(first_spelling.values())
        cost = sum(not is_sandbox(email) for email in unique)
        self._charge(key, cost, f"not enough credits, {cost} required")
        now, config = self.clock(), self.config
        job = self._toxicity.add(
            key,
            unique,
            now=now,
            charged=cost,
            ready_at=now + config.queue_delay_seconds + len(unique) / config.speed,
            fails=toxicity.fails(unique, config.seed, config.toxicity_error_rate),
        )
        return job.view()

    def toxicity_status(self, key: str, list_id: str) -> dict[str, Any]:
        return self._toxicity_list(key, list_id).view()

    def toxicity_data(self, key: str, list_id: str) -> list[dict[str, Any]]:
        """`[{"email", "toxicity"}]` of a completed list; 400 while processing or after an error."""
        job = self._toxicity_list(key, list_id)
        if job.status == toxicity.ERROR:
            raise SimulatorHTTPError(400, "list processing failed")
        if job.status != toxicity.COMPLETED:
            raise SimulatorHTTPError(400, "processing is not completed yet")
        return job.data(self.config.seed)

    def delete_toxicity_list(self, key: str, list_id: str) -> None:
        self._toxicity.remove(self._toxicity_list(key, list_id).id)

    def _toxicity_list(self, key: str, list_id: str) -> toxicity.ToxicityList:
        job = self._toxicity.get(key, list_id)
        if job is None:
            raise SimulatorHTTPError(404, "list not found")
        if job.refresh(self.clock()):
            self._balances[key] = self.credits_of(key) + job.charged
        return job

    # Introspection

    def record_request(self, method: str, path: str, status: int, key: str | None = None) -> None:
        """Log one request; the key only as its fingerprint, so tests can tell which key was used."""
        record = {"method": method, "path": path, "status": status, "time": self.clock()}
        record["key"] = fingerprint(key) if key else None
        self.requests.append(record)

    def snapshot(self) -> dict[str, Any]:
        """Credits per key fingerprint, batches (with their created/started/completed clock times) and counters;
        never the keys themselves."""
        self.advance()
        now = self.clock()
        batches = [
            {"id": b.id, "key": fingerprint(b.key), "status": b.status, "quantity": b.quantity,
             "processed": b.processed(now, self.config.speed), "credits": b.credits_used,
             "reserved": b.reserved, "answer_dropped": b.answer_dropped,
             "created": b.created, "started": b.started, "completed": b.completed}
            for b in self._batches.values()
        ]  # fmt: skip
        return {
            "credits": {fingerprint(key): balance for key, balance in self._balances.items()},
            "batches": batches,
            "batch_creations": self.batch_creations,
            "processing": sum(1 for b in self._batches.values() if b.status == PROCESSING),
            "sync_cached": len(self._sync_cache),
            "toxicity_lists": len(self._toxicity),
        }


def _unverified(result: dict[str, Any]) -> dict[str, Any]:
    """A result that finish stopped before verification, as `unknown` (finish_returns_unknown)."""
    stub = {"email": result["email"], "status": "unknown", "reason": "unknown"}
    if "name" in result:
        stub["name"] = result["name"]
    return stub
