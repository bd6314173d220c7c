"""The narrow interfaces the pipeline needs from the queue layer; `queueing/` implements them with bullmq."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bouncer_queue.domain import Priority


@dataclass(frozen=True)
class JobSpec:
    """One job to enqueue. `job_id` makes enqueueing idempotent: a second add with the same id is a no-op."""

    queue: str
    name: str
    data: Mapping[str, Any]
    priority: Priority = Priority.NORMAL
    delay_ms: int = 0
    job_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class Enqueuer(Protocol):
    """Puts jobs on the queues."""

    async def enqueue(self, spec: JobSpec) -> str:
        """Add one job; return its id."""
        ...

    async def enqueue_many(self, specs: Sequence[JobSpec]) -> list[str]:
        """Add several jobs in one round trip; return their ids."""
        ...

    async def enqueue_again(self, specs: Sequence[JobSpec]) -> int:
        """Add the jobs like `enqueue_many`, except that a job whose id belongs to a job that already ended
        (failed, or completed) is replaced by a fresh one that runs again; return how many were replaced."""
        ...

    async def slot_wakeups(self, queue: str) -> int:
        """How many batch slots were freed so far: read before counting the slots in use, and handed to
        `Defer(slot_ticket=...)`, it guarantees that a job parked for a slot cannot miss its wake-up."""
        ...

    async def wake_slot_waiter(self, queue: str) -> bool:
        """A batch slot was freed: wake the most urgent job of `queue` parked for a slot (never a job that is
        delayed for any other reason); return whether one was woken."""
        ...

    async def promote_job(self, queue: str, job_id: str) -> bool:
        """Run the delayed job `job_id` now; False when it is not waiting on a delay (absent, or running)."""
        ...
