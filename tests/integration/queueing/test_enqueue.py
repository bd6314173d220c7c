"""BullmqEnqueuer against Redis: idempotent job ids and bulk adds (waking parked jobs: test_waiters.py)."""

from __future__ import annotations

import pytest

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


async def test_an_unknown_queue_is_refused(enqueuer: BullmqEnqueuer) -> None:
    with pytest.raises(UnknownQueueError, match="email-verification"):
        await enqueuer.enqueue(JobSpec("emails", "create-batch", {}))
