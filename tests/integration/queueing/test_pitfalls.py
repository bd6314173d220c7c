"""One test per bullmq pitfall in shared/notes/bullmq-python.md, against the machine's Redis."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Mapping
from typing import Any

import pytest

from bouncer_queue.domain import Priority
from bouncer_queue.pipeline.outcomes import Defer
from bouncer_queue.pipeline.ports import JobSpec
from bouncer_queue.queueing.connection import RedisTarget
from bouncer_queue.queueing.enqueue import BullmqEnqueuer
from bouncer_queue.queueing.worker import JobContext

pytestmark = pytest.mark.redis


async def test_1_an_idle_worker_runs_a_job_delayed_12s_on_time(
    start_workers: Any, eventually: Any, enqueuer: BullmqEnqueuer
) -> None:
    ran = asyncio.Event()

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> None:
        ran.set()

    await start_workers(process)
    await asyncio.sleep(0.5)  # let the worker go idle on its blocking wait first
    started = time.monotonic()
    await enqueuer.enqueue(JobSpec("cleanup-tasks", "health-check", {}, delay_ms=12_000))
    # With redis-py 8's 5 s socket timeout this ran minutes late; the issue allows about 2 s of slack.
    await asyncio.wait_for(ran.wait(), timeout=14.5)
    assert time.monotonic() - started >= 11.5


async def test_2_a_limited_worker_wakes_for_the_next_window(
    start_workers: Any, eventually: Any, enqueuer: BullmqEnqueuer
) -> None:
    done: list[float] = []

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> None:
        done.append(time.monotonic())

    pool = await start_workers(process, "batch-download", concurrency=5, limiter_max=5, limiter_ms=2_000)
    worker = pool.bullmq_workers["batch-download"]
    assert 1 <= worker.opts["drainDelay"] <= 2
    assert worker.opts["limiter"] == {"max": 5, "duration": 2_000}

    started = time.monotonic()
    await enqueuer.enqueue_many([JobSpec("batch-download", "download-batch-results", {"n": i}) for i in range(10)])
    await eventually(lambda: len(done) == 10, timeout=15)
    # Two windows of 2 s: with the 5 s drainDelay bug the second window starts after about 5 s.
    assert done[-1] - started < 4.5
    assert done[5] - started >= 1.5  # the limit itself still holds


async def test_3_defer_spends_no_attempt(start_workers: Any, eventually: Any, enqueuer: BullmqEnqueuer) -> None:
    seen: list[JobContext] = []

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> str:
        seen.append(ctx)
        if len(seen) <= 2:
            raise Defer(50, "slot busy")
        return "done"

    await start_workers(process)
    # attempts=1: a deferral that spent an attempt would fail the job outright.
    job_id = await enqueuer.enqueue(JobSpec("cleanup-tasks", "health-check", {}, extra={"attempts": 1}))
    await eventually(lambda: len(seen) == 3, timeout=10)
    assert [ctx.attempts_made for ctx in seen] == [0, 0, 0]
    assert all(ctx.job_id == job_id and ctx.max_attempts == 1 for ctx in seen)


async def test_4_no_async_event_listener_is_registered(start_workers: Any, eventually: Any) -> None:
    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> None:
        return None

    pool = await start_workers(process, "email-verification", autostart=False)
    for worker in pool.bullmq_workers.values():
        listeners = [fn for fns in worker._callbacks.values() for fn in fns]
        assert not any(inspect.iscoroutinefunction(fn) for fn in listeners)


async def test_5_shared_clients_decode_and_jobs_arrive_intact(
    target: RedisTarget, start_workers: Any, eventually: Any, enqueuer: BullmqEnqueuer, queue_prefix: str
) -> None:
    client = target.open_client()
    try:
        await client.set(f"{queue_prefix}:probe", "value")
        assert await client.get(f"{queue_prefix}:probe") == "value"  # str, not bytes
        await client.delete(f"{queue_prefix}:probe")
    finally:
        await client.aclose()

    seen: list[tuple[str, dict[str, Any]]] = []

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> None:
        seen.append((name, dict(data)))

    await start_workers(process, "batch-status-check")
    data = {"batch_id": "b-1", "nested": {"emails": ["a@example.com"], "n": 3}}
    await enqueuer.enqueue(JobSpec("batch-status-check", "check-batch-status", data))
    await eventually(lambda: len(seen) == 1)
    assert seen == [("check-batch-status", data)]


async def test_6_every_job_has_a_priority_and_critical_runs_before_low(
    target: RedisTarget, start_workers: Any, eventually: Any, enqueuer: BullmqEnqueuer, queue_prefix: str
) -> None:
    specs = [
        JobSpec("email-verification", "create-batch", {"p": "low"}, priority=Priority.LOW),
        JobSpec("email-verification", "create-batch", {"p": "normal"}),
        JobSpec("email-verification", "create-batch", {"p": "critical"}, priority=Priority.CRITICAL),
        JobSpec("email-verification", "create-batch", {"p": "high"}, priority=Priority.HIGH),
    ]
    ids = [await enqueuer.enqueue(specs[0])] + await enqueuer.enqueue_many(specs[1:])
    client = target.open_client()
    try:
        priorities = [await client.hget(f"{queue_prefix}:email-verification:{job_id}", "priority") for job_id in ids]
    finally:
        await client.aclose()
    assert priorities == ["4", "3", "1", "2"]

    order: list[str] = []

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> None:
        order.append(data["p"])

    await start_workers(process, "email-verification")
    await eventually(lambda: len(order) == 4)
    assert order == ["critical", "high", "normal", "low"]
