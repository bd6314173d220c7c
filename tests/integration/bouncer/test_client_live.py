"""BouncerClient against the simulator served by uvicorn on a loopback port (real HTTP, real clock)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from bouncer_queue.bouncer import AuthError, make_bouncer_client
from bouncer_queue.config import Settings
from bouncer_queue.simulator import SimulatorConfig, SimulatorServer, expected_result
from bouncer_queue.simulator.state import fingerprint
from bouncer_queue.storage.records import BatchEmail

KEY = "sk-live-key-0042"


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    config = SimulatorConfig(api_keys=(KEY,), speed=100_000, queue_delay_seconds=0.0, seed="live")
    with SimulatorServer(config) as running:
        yield running


async def test_full_batch_over_http(server: SimulatorServer) -> None:
    settings = Settings(bouncer_api_key=SecretStr(KEY), bouncer_api_base_url=server.base_url)
    async with make_bouncer_client(settings) as client:
        batch = await client.create_batch([BatchEmail("a@example.com", "one"), BatchEmail("b@example.org")])
        for _ in range(200):  # bounded polling, not a timing assertion
            info = await client.get_batch(batch.batch_id, with_stats=True)
            if info.status == "completed":
                break
            await asyncio.sleep(0.02)
        assert info.status == "completed" and info.processed == 2
        results = await client.download(batch.batch_id)
        assert [r.raw_object() for r in results] == [
            expected_result("a@example.com", "live", name="one"),
            expected_result("b@example.org", "live"),
        ]
        await client.delete_batch(batch.batch_id)
        assert await client.credits() <= 1_000_000


async def test_wrong_key_over_http(server: SimulatorServer) -> None:
    settings = Settings(bouncer_api_key=SecretStr("sk-not-registered"), bouncer_api_base_url=server.base_url)
    async with make_bouncer_client(settings) as client:
        with pytest.raises(AuthError):
            await client.credits()


async def test_basic_auth_and_introspection(server: SimulatorServer) -> None:
    token = base64.b64encode(f":{KEY}".encode()).decode()
    async with httpx.AsyncClient(base_url=server.root_url) as http:
        credits = await http.get("/v1.1/credits", headers={"authorization": f"Basic {token}"})
        state = (await http.get("/__simulator/state")).json()
        logged = (await http.get("/__simulator/requests")).json()
    assert credits.status_code == 200 and isinstance(credits.json()["credits"], int)
    assert KEY not in str(state)
    assert {"method": "GET", "path": "/v1.1/credits", "status": 200, "key": fingerprint(KEY)} == {
        k: v for k, v in logged[-2].items() if k != "time"
    }
    assert KEY not in str(logged)


async def test_async_context_manager_starts_and_stops() -> None:
    async with SimulatorServer(SimulatorConfig()) as running, httpx.AsyncClient() as http:
        answer = await http.get(f"{running.base_url}/credits", headers={"x-api-key": "any"})
    assert answer.json() == {"credits": 1_000_000}
    with pytest.raises(RuntimeError):
        _ = running.base_url
