"""Reaching Redis: PING latency on the test Redis, and a clear, password-free error when nothing answers."""

from __future__ import annotations

import socket

import pytest

from bouncer_queue.config import Settings
from bouncer_queue.errors import QueueBackendError
from bouncer_queue.queueing.connection import RedisTarget, check_reachable, open_redis_target, ping, target_from_url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.redis
async def test_ping_reports_latency(target: RedisTarget) -> None:
    client = target.open_client()
    try:
        assert 0 <= await ping(client) < 5
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_open_redis_target_uses_the_configured_url(redis_url: str) -> None:
    settings = Settings(_env_file=None, redis_url=redis_url)
    async with open_redis_target(settings) as target:
        assert target.options["socket_timeout"] >= 15
        assert await check_reachable(target) >= 0


async def test_an_unreachable_redis_raises_without_the_password() -> None:
    url = f"redis://:s3cret-pw@127.0.0.1:{_free_port()}/0"
    settings = Settings(_env_file=None, redis_url=url)
    with pytest.raises(QueueBackendError) as caught:
        async with open_redis_target(settings):
            pass
    message = str(caught.value)
    assert "not reachable" in message and "127.0.0.1" in message
    assert "s3cret-pw" not in message and "***" in message
    assert "s3cret-pw" not in repr(target_from_url(url))
