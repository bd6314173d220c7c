"""A worker loop that ends on its own is noticed: the pool reports it and run_workers stops everything."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bouncer_queue.queueing.worker import WorkerPool
from bouncer_queue.workers import _until_stopped_or_dead


class FakeWorker:
    """Stands in for a bullmq Worker: run() until close(), or until it fails."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.jobs: list[Any] = []
        self._closed = asyncio.Event()

    async def run(self) -> None:
        if self.fail:
            await asyncio.sleep(0)
            raise RuntimeError("boom")
        await self._closed.wait()

    async def close(self, force: bool = False) -> None:
        self._closed.set()


async def test_the_pool_reports_the_queue_whose_loop_died() -> None:
    pool = WorkerPool({"batch-download": FakeWorker(), "email-verification": FakeWorker(fail=True)})  # type: ignore[dict-item]
    await pool.start()
    died = await asyncio.wait_for(pool.wait_until_one_stops(), timeout=5)
    assert died.startswith("email-verification") and "boom" in died
    await pool.close(1)


async def test_a_dead_loop_ends_the_wait_and_a_stop_does_not_count_as_death() -> None:
    pool = WorkerPool({"batch-download": FakeWorker(fail=True)})  # type: ignore[dict-item]
    await pool.start()
    assert (
        await asyncio.wait_for(_until_stopped_or_dead(pool, asyncio.Event()), timeout=5)
        == "batch-download (RuntimeError('boom'))"
    )
    await pool.close(1)

    healthy = WorkerPool({"batch-download": FakeWorker()})  # type: ignore[dict-item]
    await healthy.start()
    stop = asyncio.Event()
    stop.set()
    assert await asyncio.wait_for(_until_stopped_or_dead(healthy, stop), timeout=5) is None
    await healthy.close(1)


async def test_waiting_on_a_pool_that_never_started_is_a_usage_error() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        await WorkerPool({}).wait_until_one_stops()
