"""BullmqEnqueuer against Redis: idempotent job ids, bulk adds, promoting delayed jobs."""

from __future__ import annotations

import pytest

from bouncer_queue.domain import Priority
from bouncer_queue.errors import UnknownQueueError
from bouncer_queue.pipeline.ports import JobSpec
from bouncer_queue.queueing.admin import QueueAdmin
from bouncer_queue.queueing.enqueue import BullmqEnqueuer

pytestmark = pytest.mark.redis

Q = "batch-download"


async def test_a_job_id_makes_enqueueing_idempotent(enqueuer: BullmqEnqueuer, admin: QueueAdmin) -> None:
    spec = JobSpec(Q, "download-batch-results", {"batch_id": "b-1"}, job_id="download:b-1")
    first = await enqueuer.enqueue(spec)
    second = await enqueuer.enqueue(spec)
    bulk = await enqueuer.enqueue_many([spec, JobSpec(Q, "download-batch-results", {}, job_id="download:b-2")])
    assert first == second == bulk[0] == "download:b-1"
    assert bulk[1] == "download:b-2"
    assert (await admin.queue_counts(Q))["waiting"] == 2


async def test_enqueue_many_keeps_the_order_of_ids_across_queues(enqueuer: BullmqEnqueuer, admin: QueueAdmin) -> None:
    specs = [
        JobSpec(Q, "download-batch-results", {}, job_id="a"),
        JobSpec("batch-status-check", "check-batch-status", {}, job_id="b"),
        JobSpec(Q, "download-batch-results", {}, job_id="c"),
    ]
    assert await enqueuer.enqueue_many(specs) == ["a", "b", "c"]
    assert (await admin.queue_counts("batch-status-check"))["waiting"] == 1


async def test_promote_delayed_moves_deferred_jobs_to_waiting(enqueuer: BullmqEnqueuer, admin: QueueAdmin) -> None:
    for n in range(2):
        await enqueuer.enqueue(JobSpec(Q, "download-batch-results", {"n": n}, delay_ms=60_000))
    assert (await admin.queue_counts(Q))["delayed"] == 2
    assert await enqueuer.promote_delayed(Q) == 2
    counts = await admin.queue_counts(Q)
    assert (counts["delayed"], counts["waiting"]) == (0, 2)
    assert await enqueuer.promote_delayed(Q) == 0


async def test_an_unknown_queue_is_refused(enqueuer: BullmqEnqueuer) -> None:
    with pytest.raises(UnknownQueueError, match="email-verification"):
        await enqueuer.enqueue(JobSpec("emails", "create-batch", {}))


async def test_promote_delayed_with_a_limit_wakes_the_most_urgent_job_of_that_name(
    enqueuer: BullmqEnqueuer, admin: QueueAdmin
) -> None:
    queue = "email-verification"
    await enqueuer.enqueue(JobSpec(queue, "create-batch", {}, Priority.LOW, delay_ms=60_000, job_id="low"))
    await enqueuer.enqueue(JobSpec(queue, "retry-failed-batch", {}, Priority.CRITICAL, delay_ms=60_000, job_id="x"))
    await enqueuer.enqueue(JobSpec(queue, "create-batch", {}, Priority.HIGH, delay_ms=60_000, job_id="high"))
    assert await enqueuer.promote_delayed(queue, name="create-batch", limit=1) == 1
    delayed = {job.id for job in await enqueuer._queue(queue).getDelayed()}
    assert delayed == {"low", "x"}
    assert (await admin.queue_counts(queue))["waiting"] == 1
