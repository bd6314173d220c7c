"""QueueAdmin against Redis: counts, pause/resume, retry and clean failed jobs, oldest waiting job, schedulers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import pytest
from bullmq import Queue

from bouncer_queue.errors import UnknownQueueError
from bouncer_queue.pipeline.ports import JobSpec
from bouncer_queue.queueing.admin import STATES, QueueAdmin
from bouncer_queue.queueing.connection import RedisTarget
from bouncer_queue.queueing.enqueue import BullmqEnqueuer
from bouncer_queue.queueing.names import ALL_QUEUES
from bouncer_queue.queueing.worker import JobContext

pytestmark = pytest.mark.redis

Q = "email-verification"


async def test_counts_cover_every_queue_and_state(enqueuer: BullmqEnqueuer, admin: QueueAdmin) -> None:
    await enqueuer.enqueue(JobSpec(Q, "create-batch", {}))
    await enqueuer.enqueue(JobSpec(Q, "create-batch", {}, delay_ms=60_000))
    counts = await admin.counts()
    assert list(counts) == list(ALL_QUEUES)
    assert all(list(per_queue) == list(STATES) for per_queue in counts.values())
    assert counts[Q] == {"waiting": 1, "active": 0, "completed": 0, "failed": 0, "delayed": 1, "paused": 0}


async def test_a_paused_queue_counts_each_job_once_in_both_views(enqueuer: BullmqEnqueuer, admin: QueueAdmin) -> None:
    await enqueuer.enqueue(JobSpec(Q, "create-batch", {}))
    await admin.pause(Q)
    ours = (await admin.counts())[Q]
    assert (ours["waiting"], ours["paused"]) == (0, 1)
    theirs = (await admin.bullmq_counts())[Q]
    assert theirs["isPaused"] is True
    assert sum(v for k, v in theirs.items() if k != "isPaused") == 1
    assert theirs["prioritized"] == 1  # every job of ours has a priority, and BullMQ counts those apart
    await admin.resume(Q)
    assert (await admin.bullmq_counts())[Q]["isPaused"] is False


async def test_pause_holds_jobs_until_resume(
    start_workers: Any, eventually: Any, enqueuer: BullmqEnqueuer, admin: QueueAdmin
) -> None:
    ran: list[str] = []

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> None:
        ran.append(name)

    await admin.pause(Q)
    assert await admin.is_paused(Q)
    await start_workers(process, Q)
    await enqueuer.enqueue(JobSpec(Q, "create-batch", {}))
    await asyncio.sleep(1.0)
    assert ran == []
    assert (await admin.queue_counts(Q))["paused"] == 1
    await admin.resume(Q)
    assert not await admin.is_paused(Q)
    await eventually(lambda: ran == ["create-batch"])


async def test_retry_failed_and_clean_failed(
    start_workers: Any, eventually: Any, enqueuer: BullmqEnqueuer, admin: QueueAdmin
) -> None:
    runs: list[int] = []

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> None:
        runs.append(data["n"])
        if len(runs) <= 3:
            raise RuntimeError("first round fails")

    await start_workers(process, Q)
    await enqueuer.enqueue_many([JobSpec(Q, "create-batch", {"n": n}, extra={"attempts": 1}) for n in range(3)])

    async def failed(n: int) -> bool:
        return (await admin.queue_counts(Q))["failed"] == n

    await eventually(lambda: failed(3))
    assert await admin.retry_failed(Q) == 3
    await eventually(lambda: len(runs) == 6)
    await eventually(lambda: failed(0))
    assert await admin.retry_failed(Q) == 0

    await enqueuer.enqueue(JobSpec(Q, "create-batch", {"n": 9}, extra={"attempts": 1}))
    runs.clear()  # fail again
    await eventually(lambda: failed(1))
    assert await admin.clean_failed(Q, hours=1) == 0
    await asyncio.sleep(0.1)
    assert await admin.clean_failed(Q, hours=0) == 1
    assert await failed(0)


async def test_oldest_waiting_age(enqueuer: BullmqEnqueuer, admin: QueueAdmin) -> None:
    assert await admin.oldest_waiting_age_seconds() is None
    await enqueuer.enqueue(JobSpec(Q, "create-batch", {}))
    await asyncio.sleep(0.3)
    await enqueuer.enqueue(JobSpec("batch-download", "download-batch-results", {}))
    age = await admin.oldest_waiting_age_seconds()
    assert age is not None and 0.25 <= age < 30


async def test_upsert_schedulers_is_idempotent(target: RedisTarget, queue_prefix: str, admin: QueueAdmin) -> None:
    await admin.upsert_schedulers(health_every_ms=60_000, cleanup_every_ms=300_000)
    await admin.upsert_schedulers(health_every_ms=60_000, cleanup_every_ms=300_000)
    queue = Queue("cleanup-tasks", {"connection": target.bullmq_connection(), "prefix": queue_prefix})
    try:
        schedulers = await queue.getJobSchedulers()
        assert sorted(s["key"] for s in schedulers) == ["cleanup-rate-limits", "health-check"]
        jobs = await queue.getJobs(["delayed", "prioritized", "wait"])
        assert {job.name for job in jobs} == {"cleanup-rate-limits", "health-check"}
        assert all(job.priority > 0 for job in jobs)
    finally:
        await queue.close()


async def test_a_changed_interval_keeps_firing_after_a_late_run(
    target: RedisTarget, queue_prefix: str, start_workers: Any, eventually: Any, admin: QueueAdmin
) -> None:
    # Workers once started with the default 60 s interval, now with 1 s. bullmq kept the 60 s scheduler's offset
    # (up to 59 s), so a run picked up late put the next one up to a minute away: "the health check stopped
    # firing, two delayed jobs were never promoted".
    await admin.upsert_schedulers(health_every_ms=60_000, cleanup_every_ms=300_000)
    await admin.upsert_schedulers(health_every_ms=1_000, cleanup_every_ms=300_000)
    runs: list[str] = []

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> None:
        runs.append(name)
        if name == "health-check":
            await asyncio.sleep(2.5)  # over twice the interval: the second run is picked up late

    await start_workers(process)
    await eventually(lambda: runs.count("health-check") >= 2)
    queue = Queue("cleanup-tasks", {"connection": target.bullmq_connection(), "prefix": queue_prefix})
    try:
        scheduler = await queue.getJobScheduler("health-check")
    finally:
        await queue.close()
    # The run after a late one is due within one interval, whatever the scheduler's history.
    assert scheduler["every"] == 1_000 and scheduler["next"] <= time.time() * 1000 + 1_000


async def test_an_unknown_queue_is_refused(admin: QueueAdmin) -> None:
    with pytest.raises(UnknownQueueError):
        await admin.pause("nope")
