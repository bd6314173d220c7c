"""The `world` fixture of the stage tests: build a StageContext whose Bouncer answers with a responder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from stage_support import RecordingEnqueuer, Responder

from bouncer_queue.bouncer import BouncerClient
from bouncer_queue.pipeline.context import MemoryGate, Policy, StageContext
from bouncer_queue.storage import migrate
from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.ratelimit import Budget, RateLimiter
from bouncer_queue.storage.repository import Repository


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Callable[[Responder], StageContext]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    await migrate.upgrade(url)
    engine = make_engine(url)
    clients: list[BouncerClient] = []

    def build(responder: Responder) -> StageContext:
        calls: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(request)
            return responder(request)

        http = httpx.AsyncClient(base_url="https://bouncer.test/v1.1", transport=httpx.MockTransport(handler))
        client = BouncerClient(http, lambda: SecretStr("k-123456"))
        clients.append(client)
        limiter = RateLimiter(engine, {"batch": Budget(100, 60), "create": Budget(100, 60)})
        ctx = StageContext(
            Repository(engine), client, limiter, RecordingEnqueuer(), MemoryGate(), Policy(max_in_flight=2)
        )
        ctx.calls = calls  # type: ignore[attr-defined]
        return ctx

    yield build
    for client in clients:
        await client.aclose()
    await engine.dispose()
