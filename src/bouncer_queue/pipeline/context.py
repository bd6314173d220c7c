"""What every pipeline stage receives: its collaborators and the policy numbers, passed in, never imported.

The stages only see narrow interfaces: the repository (the ledger), the Bouncer client, the shared rate
limiter, an Enqueuer and two gates (credits, auth). `bootstrap.py` builds the real ones; tests may hand in others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from bouncer_queue.pipeline.precedence import Precedence

if TYPE_CHECKING:
    from bouncer_queue.bouncer import BouncerClient
    from bouncer_queue.config import Settings
    from bouncer_queue.pipeline.ports import Enqueuer
    from bouncer_queue.storage.ratelimit import Decision
    from bouncer_queue.storage.repository import Repository


class Limiter(Protocol):
    """The shared Bouncer budget (storage/ratelimit.py): answers go, or how long to wait."""

    async def acquire(self, budgets: Sequence[str], endpoint: str) -> Decision: ...

    async def peek(self, budgets: Sequence[str]) -> Decision: ...

    async def answered(self, decision: Decision) -> None:
        """Best effort: never raises (it runs in the `finally` of a Bouncer call)."""

    async def refund(self, decision: Decision) -> None: ...


class Gate(Protocol):
    """A shared switch that stops submissions: the credits gate (closed after a 402, until the health check
    sees credits again) and the auth gate (closed after a 401/403, until the API key changes)."""

    async def is_closed(self) -> bool: ...

    async def close(self, reason: str) -> None: ...

    async def open(self) -> None: ...


CreditsGate = Gate


class StageObserver(Protocol):
    """Receives stage outcomes for metrics; every method is optional to act on."""

    def emails_verified(self, status: str, count: int) -> None: ...


class _NoObserver:
    def emails_verified(self, status: str, count: int) -> None:
        return None


@dataclass(frozen=True)
class Policy:
    """The numbers (and the callback URL) the stages obey, taken from Settings once."""

    max_in_flight: int = 15
    #: The ceiling of the adaptive status poll (pipeline/poll.py).
    poll_interval_ms: int = 15_000
    #: Its floor, and the first poll after a create.
    poll_min_ms: int = 2_000
    max_batch_retries: int = 3
    #: How long a create-batch job waits before looking again for a free batch slot. A completing batch wakes
    #: the next parked job at once (queueing/waiters.py), so this long timer is only the fallback; keeping it
    #: long stops parked jobs from waking only to find the slots still full.
    slot_wait_ms: int = 300_000
    #: How long a create-batch job waits while credits are exhausted before looking again.
    credits_wait_ms: int = 60_000
    #: How often a job that calls Bouncer looks again at a closed auth gate (a Redis read, no Bouncer call).
    auth_wait_ms: int = 15_000
    #: How long to wait after Bouncer answered 429 (it sends no Retry-After header).
    rate_limited_wait_ms: int = 5_000
    #: How long a create call can take at most (the HTTP timeouts, plus a margin). A batch found `submitting`
    #: for less than this may have a call under way in another worker, so it is looked at again later.
    submit_grace_ms: int = 45_000
    #: With a callback URL, how long a batch whose create answer was lost waits for Bouncer's callback (which
    #: comes when the batch finishes) before it is dead-lettered.
    callback_wait_ms: int = 86_400_000
    #: BOUNCER_CALLBACK_URL: where Bouncer reaches our callback route; None sends no callback URL.
    callback_base_url: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        longest_call = max(settings.bouncer_timeout_seconds, settings.bouncer_create_timeout_seconds)
        return cls(
            max_in_flight=settings.max_concurrent_batches,
            poll_interval_ms=int(settings.poll_interval_seconds * 1000),
            poll_min_ms=int(min(settings.poll_min_interval_seconds, settings.poll_interval_seconds) * 1000),
            max_batch_retries=settings.max_batch_retries,
            slot_wait_ms=max(1_000, int(settings.poll_interval_seconds * 1000 * 20)),
            credits_wait_ms=int(settings.health_check_interval_seconds * 1000),
            rate_limited_wait_ms=max(1_000, int(settings.rate_limit_window_seconds * 1000 / 12)),
            submit_grace_ms=int((longest_call + settings.bouncer_connect_timeout_seconds + 5) * 1000),
            callback_wait_ms=int(settings.callback_wait_seconds * 1000),
            callback_base_url=settings.bouncer_callback_url,
        )


@dataclass
class StageContext:
    """The collaborators of the stages."""

    repo: Repository
    bouncer: BouncerClient
    limiter: Limiter
    enqueuer: Enqueuer
    credits_gate: Gate
    policy: Policy = field(default_factory=Policy)
    observer: StageObserver = field(default_factory=_NoObserver)
    clock: Callable[[], float] = time.time
    auth_gate: Gate = field(default_factory=lambda: MemoryGate())
    #: Creates before downloads' heavy steps, within this process (pipeline/precedence.py).
    precedence: Precedence = field(default_factory=Precedence)


class MemoryGate:
    """A gate in this process only: the default for embeddings and tests that build their own context."""

    def __init__(self) -> None:
        self.reason: str | None = None

    async def is_closed(self) -> bool:
        return self.reason is not None

    async def close(self, reason: str) -> None:
        self.reason = reason

    async def open(self) -> None:
        self.reason = None
