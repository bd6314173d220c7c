"""Jobs parked for a batch slot, against Redis: a freed slot wakes the most urgent parked job, and nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from bouncer_queue.domain import Priority
from bouncer_queue.pipeline.outcomes import Defer
from bouncer_queue.pipeline.ports import JobSpec
from bouncer_queue.queueing.admin import QueueAdmin
from bouncer_queue.queueing.enqueue import BullmqEnqueuer
from bouncer_queue.queueing.worker import JobContext

pytestmark = pytest.mark.redis

Q = "email-verification"
HOUR_MS = 3_600_000


def parking_processor(enqueuer: BullmqEnqueuer, runs: list[str]) -> Any:
    """Each job parks for a slot on its first run (with a fallback timer of an hour) and is done on its second."""

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> None:
        ticket = await enqueuer.slot_wakeups(Q)
        runs.append(ctx.job_id)
        if runs.count(ctx.job_id) == 1:
            raise Defer(HOUR_MS, "all batch slots are in flight", slot_ticket=ticket)

    return process


async def delayed_ids(enqueuer: BullmqEnqueuer) -> set[str]:
    return {str(job.id) for job in await enqueuer._queue(Q).getDelayed()}


async def test_a_freed_slot_wakes_the_most_urgent_parked_job_and_never_a_user_delayed_one(
    start_workers: Any, eventually: Any, enqueuer: BullmqEnqueuer, admin: QueueAdmin
) -> None:
    runs: list[str] = []
    await enqueuer.enqueue(JobSpec(Q, "create-batch", {}, Priority.CRITICAL, delay_ms=HOUR_MS, job_id="user-delayed"))
    await start_workers(parking_processor(enqueuer, runs), Q, concurrency=2)
    await enqueuer.enqueue(JobSpec(Q, "create-batch", {}, Priority.LOW, job_id="low"))
    await enqueuer.enqueue(JobSpec(Q, "create-batch", {}, Priority.HIGH, job_id="high"))
    await eventually(lambda: _equals(delayed_ids(enqueuer), {"user-delayed", "low", "high"}))

    assert await enqueuer.wake_slot_waiter(Q)
    await eventually(lambda: runs.count("high") == 2)
    assert await delayed_ids(enqueuer) == {"user-delayed", "low"}

    assert await enqueuer.wake_slot_waiter(Q)
    await eventually(lambda: runs.count("low") == 2)
    assert not await enqueuer.wake_slot_waiter(Q)  # nobody parked: the user's delay holds
    assert await delayed_ids(enqueuer) == {"user-delayed"}
    assert "user-delayed" not in runs


async def test_a_job_that_parks_after_a_wake_up_it_missed_wakes_itself(
    start_workers: Any, eventually: Any, enqueuer: BullmqEnqueuer
) -> None:
    runs: list[str] = []

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> None:
        ticket = await enqueuer.slot_wakeups(Q)
        runs.append(ctx.job_id)
        if len(runs) == 1:
            # A slot frees between this job's count and its parking: nobody is parked yet to be woken.
            assert not await enqueuer.wake_slot_waiter(Q)
            raise Defer(HOUR_MS, "all batch slots are in flight", slot_ticket=ticket)

    await start_workers(process, Q)
    await enqueuer.enqueue(JobSpec(Q, "create-batch", {}, job_id="late"))
    await eventually(lambda: len(runs) == 2)
    assert await delayed_ids(enqueuer) == set()


async def _equals(found: Any, expected: set[str]) -> bool:
    return bool(await found == expected)
