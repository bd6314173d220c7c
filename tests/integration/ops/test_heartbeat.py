"""A workers process's heartbeat in real Redis: written at start, renewed, withdrawn on exit, and its renewal loop
ends with the process even when a beat loses the cancellation meant to stop it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis import asyncio as aioredis

from bouncer_queue.ops.heartbeat import Heartbeat, beating, live_workers, make_info


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.from_url(redis_url)
    try:
        yield redis
    finally:
        await redis.aclose()


def _heartbeat(client: aioredis.Redis, prefix: str, worker_id: str = "host:1") -> Heartbeat:
    return Heartbeat(client, prefix, make_info(worker_id, "host", 1, ["q"], "0"), ttl_seconds=30)


async def test_a_heartbeat_is_listed_while_its_block_runs_and_withdrawn_after(
    client: aioredis.Redis, queue_prefix: str
) -> None:
    async with beating(_heartbeat(client, queue_prefix), every_seconds=0.01):
        assert [w.id for w in await live_workers(client, queue_prefix)] == ["host:1"]
    assert await live_workers(client, queue_prefix) == []


class _SwallowingHeartbeat(Heartbeat):
    """From its second beat on, a beat that hangs and swallows its cancellation, as a library awaiting Redis can."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        super().__init__(client, prefix, make_info("host:2", "host", 2, ["q"], "0"), ttl_seconds=30)
        self.renewals = 0
        self.hanging = asyncio.Event()

    async def beat(self) -> None:
        if self.last_success is None:
            await super().beat()
            return
        self.renewals += 1
        self.hanging.set()
        try:
            await asyncio.sleep(3_600)
        except asyncio.CancelledError:
            pass


async def test_a_beat_that_swallows_its_cancellation_cannot_hold_the_stop(
    client: aioredis.Redis, queue_prefix: str
) -> None:
    heartbeat = _SwallowingHeartbeat(client, queue_prefix)

    async def run() -> None:
        async with beating(heartbeat, every_seconds=0.001):
            await heartbeat.hanging.wait()

    # A hang is the failure (the workers process never exited); the bound only makes it one instead of hanging.
    await asyncio.wait_for(run(), 60)
    assert heartbeat.renewals == 1
    assert await live_workers(client, queue_prefix) == []
