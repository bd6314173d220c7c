"""Factories for the bullmq tests: a target on the test Redis, an enqueuer, worker pools and an admin, each closed
at teardown, all under the test's own key prefix."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest

from bouncer_queue.config import QueueTuning
from bouncer_queue.queueing.admin import QueueAdmin
from bouncer_queue.queueing.connection import RedisTarget, target_from_url
from bouncer_queue.queueing.enqueue import BullmqEnqueuer
from bouncer_queue.queueing.worker import FinalFailureHandler, Processor, WorkerPool, build_workers


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0) -> None:
    """Poll `check` until it is true; fail after `timeout` (a bound, not a measurement)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


class FinalFailures:
    """An on_final_failure that records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Mapping[str, Any], BaseException, int]] = []

    async def __call__(self, queue: str, name: str, data: Mapping[str, Any], err: BaseException, attempts: int) -> None:
        self.calls.append((queue, name, dict(data), err, attempts))


@pytest.fixture
def target(redis_url: str) -> RedisTarget:
    return target_from_url(redis_url)


@pytest.fixture
async def enqueuer(target: RedisTarget, queue_prefix: str) -> AsyncIterator[BullmqEnqueuer]:
    enq = BullmqEnqueuer(target, queue_prefix, attempts=3, backoff_ms=100, keep_completed=100, keep_failed=100)
    yield enq
    await enq.close()


@pytest.fixture
async def admin(target: RedisTarget, queue_prefix: str) -> AsyncIterator[QueueAdmin]:
    adm = QueueAdmin(target, queue_prefix)
    yield adm
    await adm.close()


@pytest.fixture
def final_failures() -> FinalFailures:
    return FinalFailures()


StartWorkers = Callable[..., Awaitable[WorkerPool]]


@pytest.fixture
async def start_workers(
    target: RedisTarget, queue_prefix: str, final_failures: FinalFailures
) -> AsyncIterator[StartWorkers]:
    """start_workers(processor, queue="cleanup-tasks", concurrency=1, limiter_max=0, limiter_ms=60000)."""
    pools: list[WorkerPool] = []

    async def start(
        processor: Processor,
        queue: str = "cleanup-tasks",
        *,
        concurrency: int = 1,
        limiter_max: int = 0,
        limiter_ms: int = 60_000,
        on_final_failure: FinalFailureHandler | None = None,
        autostart: bool = True,
    ) -> WorkerPool:
        pool = build_workers(
            target,
            queue_prefix,
            {queue: QueueTuning(concurrency, limiter_max, limiter_ms)},
            processor,
            drain_delay_seconds=1,
            on_final_failure=on_final_failure or final_failures,
        )
        pools.append(pool)
        if autostart:
            await pool.start()
        return pool

    yield start
    for pool in pools:
        await pool.close(grace_seconds=5)


@pytest.fixture(name="eventually")
def eventually_fixture() -> Callable[..., Awaitable[None]]:
    return eventually
