"""Fixtures for the client-against-simulator tests: an in-process simulator on a manual clock, and the client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from bouncer_queue.bouncer import BouncerClient, make_http_client
from bouncer_queue.simulator import ManualClock, SimulatorConfig, SimulatorState, create_app

API_KEY = "sk-test-Secret-7f3a9c"


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sim_config() -> SimulatorConfig:
    return SimulatorConfig(api_keys=(API_KEY,), speed=100_000, queue_delay_seconds=0.5, seed="tests")


@pytest.fixture
def sim_state(sim_config: SimulatorConfig, clock: ManualClock) -> SimulatorState:
    return SimulatorState(sim_config, clock=clock)


@pytest.fixture
def responses() -> list[tuple[str, int]]:
    """What the client reported to its on_response hook."""
    return []


@pytest.fixture
async def bouncer(sim_state: SimulatorState, responses: list[tuple[str, int]]) -> AsyncIterator[BouncerClient]:
    transport = httpx.ASGITransport(app=create_app(sim_state))
    http = make_http_client(
        "http://simulator/v1.1", timeout=5, connect_timeout=5, max_connections=4, transport=transport
    )
    async with BouncerClient(http, lambda: SecretStr(API_KEY), on_response=lambda g, s: responses.append((g, s))) as c:
        yield c
