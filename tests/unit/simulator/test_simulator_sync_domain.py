"""Batch-sync and domain endpoints through httpx.ASGITransport: shapes, limits, credits and the sync result cache."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bouncer_queue.simulator import ManualClock, SimulatorConfig, SimulatorState, create_app, expected_result
from bouncer_queue.simulator.results import expected_domain

KEY = "sim-key-1"
HEADERS = {"x-api-key": KEY}
SYNC = "/v1.1/email/verify/batch/sync"
SEED = "sync-tests"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def config() -> SimulatorConfig:
    return SimulatorConfig(api_keys=(KEY,), seed=SEED, max_sync_size=3, sync_limit=5, domain_limit=3)


@pytest.fixture
def state(config: SimulatorConfig, clock: ManualClock) -> SimulatorState:
    return SimulatorState(config, clock=clock)


@pytest.fixture
async def http(state: SimulatorState) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(state)), base_url="http://sim") as c:
        yield c


def _without_retry_after(result: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in result.items() if k != "retryAfter"}


async def test_sync_returns_results_in_order_and_charges_each_new_address(
    http: httpx.AsyncClient, state: SimulatorState
) -> None:
    emails = ["ann@example.com", "bob@gmail.com", "deliverable@sandbox.usebouncer.com"]
    answer = await http.post(SYNC, json=emails, headers=HEADERS)
    assert answer.status_code == 200
    assert [_without_retry_after(r) for r in answer.json()] == [
        _without_retry_after(expected_result(e, SEED)) for e in emails
    ]
    assert state.credits_of(KEY) == state.config.credits - 2  # the sandbox address is free


async def test_sync_repeat_within_ttl_is_the_same_result_and_free(
    http: httpx.AsyncClient, state: SimulatorState, clock: ManualClock
) -> None:
    first = (await http.post(SYNC, json=["first@example.com", "x@example.com"], headers=HEADERS)).json()
    balance = state.credits_of(KEY)
    clock.advance(state.config.sync_cache_seconds - 1)
    again = (await http.post(SYNC, json=["X@Example.com", "first@example.com"], headers=HEADERS)).json()
    assert again == [{**first[1], "email": "X@Example.com"}, first[0]]
    assert state.credits_of(KEY) == balance


async def test_sync_after_ttl_charges_again(http: httpx.AsyncClient, state: SimulatorState, clock: ManualClock) -> None:
    await http.post(SYNC, json=["a@example.com"], headers=HEADERS)
    clock.advance(state.config.sync_cache_seconds)
    await http.post(SYNC, json=["a@example.com"], headers=HEADERS)
    assert state.credits_of(KEY) == state.config.credits - 2


def test_sync_cache_is_per_key() -> None:
    other = SimulatorState(SimulatorConfig(seed=SEED), clock=ManualClock())
    other.verify_sync("k1", ["a@example.com"])
    other.verify_sync("k2", ["a@example.com"])
    assert other.credits_of("k1") == other.credits_of("k2") == other.config.credits - 1


def test_sync_duplicates_in_one_request_are_charged_once(state: SimulatorState) -> None:
    results = state.verify_sync(KEY, ["a@example.com", "A@example.com"])
    assert [r["email"] for r in results] == ["a@example.com", "A@example.com"]
    assert state.credits_of(KEY) == state.config.credits - 1


async def test_sync_402_names_the_balance_and_caches_nothing(http: httpx.AsyncClient, state: SimulatorState) -> None:
    state.set_credits(KEY, 1)
    refused = await http.post(SYNC, json=["a@example.com", "b@example.com"], headers=HEADERS)
    assert refused.status_code == 402
    assert refused.json() == {"status": 402, "error": "Payment Required", "message": "1 credits left"}
    assert (await http.post(SYNC, json=["a@example.com"], headers=HEADERS)).status_code == 200
    assert state.credits_of(KEY) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'["a@x.com","b@x.com","c@x.com","d@x.com"]', "too many emails"),
        (b"[]", "no emails provided"),
        (b'[{"email": "a@x.com"}]', "body must be an array of email strings"),
        (b"not json", "invalid json body"),
    ],
)
async def test_sync_bad_bodies_are_400(http: httpx.AsyncClient, content: bytes, message: str) -> None:
    answer = await http.post(SYNC, content=content, headers={**HEADERS, "content-type": "application/json"})
    assert (answer.status_code, answer.json()["message"]) == (400, message)


async def test_sync_has_its_own_rate_limit(http: httpx.AsyncClient, state: SimulatorState) -> None:
    for _ in range(state.config.sync_limit):
        assert (await http.post(SYNC, json=["a@example.com"], headers=HEADERS)).status_code == 200
    assert (await http.post(SYNC, json=["a@example.com"], headers=HEADERS)).status_code == 429
    assert (await http.get("/v1.1/domain?domain=example.com", headers=HEADERS)).status_code == 200


async def test_domain_shape_costs_one_credit(http: httpx.AsyncClient, state: SimulatorState) -> None:
    answer = await http.get("/v1.1/domain", params={"domain": "gmail.com"}, headers=HEADERS)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"domain"}
    assert body["domain"] == {
        "name": "gmail.com",
        "acceptAll": body["domain"]["acceptAll"],
        "disposable": "no",
        "free": "yes",
        "dns": {"type": "MX", "record": "mx1.google.com."},
        "provider": "google.com",
        "toxic": "unknown",
    }
    assert body["domain"]["acceptAll"] in ("yes", "no")
    assert state.credits_of(KEY) == state.config.credits - 1


@pytest.mark.parametrize("domain", ["example.com", "gmail.com", "mailinator.com", "dead-domain.example", "x.invalid"])
def test_domain_agrees_with_the_per_email_generator(domain: str) -> None:
    checked = expected_domain(domain, SEED)["domain"]
    email = expected_result(f"someone@{domain}", SEED)
    for flag in ("name", "disposable", "free"):
        assert checked[flag] == email["domain"][flag]
    assert checked["dns"] == email["dns"]
    assert checked.get("provider") == email.get("provider")


async def test_domain_402_and_400(http: httpx.AsyncClient, state: SimulatorState) -> None:
    missing = await http.get("/v1.1/domain", headers=HEADERS)
    assert (missing.status_code, missing.json()["message"]) == (400, "domain is required")
    state.set_credits(KEY, 0)
    broke = await http.get("/v1.1/domain?domain=example.com", headers=HEADERS)
    assert broke.status_code == 402 and broke.json()["message"] == "0 credits left"


async def test_domain_rate_limit(http: httpx.AsyncClient, state: SimulatorState) -> None:
    statuses = [
        (await http.get("/v1.1/domain?domain=example.com", headers=HEADERS)).status_code
        for _ in range(state.config.domain_limit + 1)
    ]
    assert statuses == [200] * state.config.domain_limit + [429]
