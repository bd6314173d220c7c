"""The /v1/toxicity/list API through httpx.ASGITransport on a manual clock: lifecycle, errors, limits, credits."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from bouncer_queue.simulator import (
    ManualClock,
    SimulatorConfig,
    SimulatorHTTPError,
    SimulatorState,
    create_app,
    expected_result,
)

KEY = "sim-key-1"
HEADERS = {"x-api-key": KEY}
LISTS = "/v1/toxicity/list"
SEED = "toxicity-tests"
EMAILS = ["ann@example.com", "bob@gmail.com", "ANN@example.com", "deliverable@sandbox.usebouncer.com"]


def _config(**overrides: object) -> SimulatorConfig:
    settings: dict[str, object] = {"api_keys": (KEY,), "seed": SEED, "speed": 10.0, "queue_delay_seconds": 1.0}
    settings.update(overrides)
    return SimulatorConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def state(clock: ManualClock) -> SimulatorState:
    return SimulatorState(_config(toxicity_error_rate=0.0, toxicity_limit=3), clock=clock)


@pytest.fixture
async def http(state: SimulatorState) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(state)), base_url="http://sim") as c:
        yield c


async def test_create_processing_then_completed_with_data(http: httpx.AsyncClient, clock: ManualClock) -> None:
    created = await http.post(LISTS, json=EMAILS, headers=HEADERS)
    assert created.status_code == 200
    job = created.json()
    assert set(job) == {"id", "createdAt", "status"} and job["status"] == "processing"
    assert re.fullmatch(r"[0-9a-f]{24}", job["id"]) and job["createdAt"].endswith("Z")

    early = await http.get(f"{LISTS}/{job['id']}/data", headers=HEADERS)
    assert (early.status_code, early.json()["message"]) == (400, "processing is not completed yet")

    clock.advance(1.0 + 3 / 10.0)  # queue delay + 3 unique addresses at 10/s
    status = (await http.get(f"{LISTS}/{job['id']}", headers=HEADERS)).json()
    assert status == {**job, "status": "completed"}
    data = (await http.get(f"{LISTS}/{job['id']}/data", headers=HEADERS)).json()
    unique = [EMAILS[0], EMAILS[1], EMAILS[3]]
    assert data == [{"email": e, "toxicity": expected_result(e, SEED)["toxicity"]} for e in unique]


async def test_charges_one_credit_per_unique_non_sandbox_address(
    http: httpx.AsyncClient, state: SimulatorState
) -> None:
    await http.post(LISTS, json=EMAILS, headers=HEADERS)
    assert state.credits_of(KEY) == state.config.credits - 2


async def test_not_enough_credits(http: httpx.AsyncClient, state: SimulatorState) -> None:
    state.set_credits(KEY, 1)
    refused = await http.post(LISTS, json=EMAILS, headers=HEADERS)
    assert refused.status_code == 402
    assert refused.json() == {"status": 402, "error": "Payment Required", "message": "not enough credits, 2 required"}
    assert state.credits_of(KEY) == 1


async def test_unknown_and_deleted_lists_are_404(http: httpx.AsyncClient) -> None:
    job = (await http.post(LISTS, json=EMAILS, headers=HEADERS)).json()
    deleted = await http.delete(f"{LISTS}/{job['id']}", headers=HEADERS)
    assert (deleted.status_code, deleted.json()) == (200, {})
    for path in (f"{LISTS}/{job['id']}", f"{LISTS}/{job['id']}/data", f"{LISTS}/0123456789abcdef01234567"):
        missing = await http.get(path, headers=HEADERS)
        assert (missing.status_code, missing.json()["message"]) == (404, "list not found")
    assert (await http.delete(f"{LISTS}/{job['id']}", headers=HEADERS)).status_code == 404


def test_lists_are_private_to_their_key() -> None:
    state = SimulatorState(_config(api_keys=()), clock=ManualClock())
    job = state.create_toxicity_list("k1", EMAILS)
    with pytest.raises(SimulatorHTTPError) as caught:
        state.toxicity_status("k2", job["id"])
    assert (caught.value.status, caught.value.message) == (404, "list not found")


async def test_create_limit(http: httpx.AsyncClient, state: SimulatorState) -> None:
    statuses = [
        (await http.post(LISTS, json=["a@example.com"], headers=HEADERS)).status_code
        for _ in range(state.config.toxicity_limit + 1)
    ]
    assert statuses == [200] * state.config.toxicity_limit + [429]


@pytest.mark.parametrize("content", [b"[]", b'[{"email": "a@x.com"}]', b"{bad"])
async def test_bad_bodies_are_400(http: httpx.AsyncClient, content: bytes) -> None:
    answer = await http.post(LISTS, content=content, headers={**HEADERS, "content-type": "application/json"})
    assert answer.status_code == 400


async def test_only_under_v1(http: httpx.AsyncClient) -> None:
    assert (await http.post("/v1.1/toxicity/list", json=EMAILS, headers=HEADERS)).status_code == 404


async def test_a_failing_list_ends_in_error_and_is_refunded() -> None:
    clock = ManualClock()
    state = SimulatorState(_config(toxicity_error_rate=1.0), clock=clock)
    job = state.create_toxicity_list(KEY, ["a@example.com", "b@example.com"])
    assert state.credits_of(KEY) == state.config.credits - 2
    clock.advance(60)
    assert state.toxicity_status(KEY, job["id"])["status"] == "error"
    assert state.credits_of(KEY) == state.config.credits
    state.toxicity_status(KEY, job["id"])
    assert state.credits_of(KEY) == state.config.credits  # refunded once


def test_errors_are_rare_and_deterministic() -> None:
    def outcomes() -> list[str]:
        clock = ManualClock()
        state = SimulatorState(_config(), clock=clock)
        ids = [state.create_toxicity_list(KEY, [f"user{i}@example.com"])["id"] for i in range(500)]
        clock.advance(60)
        return [state.toxicity_status(KEY, list_id)["status"] for list_id in ids]

    first = outcomes()
    assert first == outcomes()
    assert 0 < first.count("error") < 30 and set(first) == {"completed", "error"}
