"""The simulator's HTTP layer through httpx.ASGITransport: parsing, auth forms, error shapes, introspection."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from bouncer_queue.simulator import (
    CSV_COLUMNS,
    ManualClock,
    SimulatorConfig,
    SimulatorState,
    create_app,
    deliver_callbacks,
    fingerprint,
)

KEY = "sim-key-1"
HEADERS = {"x-api-key": KEY}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def state(clock: ManualClock) -> SimulatorState:
    return SimulatorState(SimulatorConfig(api_keys=(KEY,), speed=1_000, queue_delay_seconds=0), clock=clock)


@pytest.fixture
async def http(state: SimulatorState) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(state)), base_url="http://sim") as c:
        yield c


async def test_text_plain_create_with_skip_header(http: httpx.AsyncClient) -> None:
    body = "email\nann@example.com\n\nbob@example.com\n"
    answer = await http.post(
        "/v1.1/email/verify/batch?skip-header=true",
        content=body,
        headers={**HEADERS, "content-type": "text/plain"},
    )
    assert answer.status_code == 200 and answer.json()["quantity"] == 2


@pytest.mark.parametrize(
    "content", [b"{not json", b'{"email": "a@b.com"}', b'[{"name": "x"}]', b'[{"email": "a@b.com", "name": 5}]']
)
async def test_malformed_batch_bodies_are_400(http: httpx.AsyncClient, content: bytes) -> None:
    answer = await http.post(
        "/v1.1/email/verify/batch", content=content, headers={**HEADERS, "content-type": "application/json"}
    )
    assert answer.status_code == 400 and answer.json()["status"] == 400


async def test_basic_auth_and_401_body(http: httpx.AsyncClient) -> None:
    basic = base64.b64encode(f":{KEY}".encode()).decode()
    assert (await http.get("/v1.1/credits", headers={"authorization": f"Basic {basic}"})).status_code == 200
    denied = await http.get("/v1.1/credits", headers={"x-api-key": "nope"})
    assert denied.status_code == 401
    assert denied.json() == {"status": 401, "error": "Unauthorized", "message": "user not found"}


async def test_string_status_and_unknown_route() -> None:
    state = SimulatorState(SimulatorConfig(string_status=True), clock=ManualClock())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(state)), base_url="http://sim") as c:
        missing = await c.get("/v1.1/email/verify/batch/abc", headers=HEADERS)
        route = await c.get("/v1.1/nothing", headers=HEADERS)
    assert missing.json() == {"status": "404", "error": "Not Found", "message": "request abc does not exist"}
    assert route.status_code == 404 and route.json()["status"] == "404"


async def test_429_body(state: SimulatorState, http: httpx.AsyncClient) -> None:
    for _ in range(state.config.credits_limit):
        await http.get("/v1.1/credits", headers=HEADERS)
    limited = await http.get("/v1.1/credits", headers=HEADERS)
    assert limited.status_code == 429 and "retry-after" not in limited.headers
    assert limited.json() == {"status": 429, "error": "Too Many Requests", "message": "too many requests"}


async def test_finish_202_delete_200_and_csv_header(http: httpx.AsyncClient, clock: ManualClock) -> None:
    created = (await http.post("/v1.1/email/verify/batch", json=[{"email": "a@example.com"}], headers=HEADERS)).json()
    path = f"/v1.1/email/verify/batch/{created['batchId']}"
    finished = await http.post(f"{path}/finish", headers=HEADERS)
    assert (finished.status_code, finished.json()) == (202, {})
    csv_text = (await http.get(f"{path}/download", headers={**HEADERS, "accept": "text/csv"})).text
    assert csv_text.splitlines()[0] == ",".join(CSV_COLUMNS)
    deleted = await http.delete(path, headers=HEADERS)
    assert (deleted.status_code, deleted.json()) == (200, {})
    assert (await http.delete(path, headers=HEADERS)).status_code == 404


async def test_introspection(http: httpx.AsyncClient, clock: ManualClock) -> None:
    await http.post("/__simulator/credits", json={"api_key": KEY, "credits": 5})
    await http.post("/v1.1/email/verify/batch", json=[{"email": "a@example.com"}], headers=HEADERS)
    clock.advance(1)
    state = (await http.get("/__simulator/state")).json()
    requests = (await http.get("/__simulator/requests")).json()

    assert state["credits"] == {fingerprint(KEY): 4} and KEY not in str(state)
    assert state["batch_creations"] == 1 and state["batches"][0]["status"] == "completed"
    assert [(r["method"], r["path"], r["status"]) for r in requests] == [
        ("POST", "/__simulator/credits", 200),
        ("POST", "/v1.1/email/verify/batch", 200),
        ("GET", "/__simulator/state", 200),
    ]
    assert requests[0]["time"] == clock.now - 1
    assert (await http.post("/__simulator/credits", json={"credits": 1})).status_code == 400


async def test_callbacks_delivered_once_to_loopback_only(state: SimulatorState, clock: ManualClock) -> None:
    state.create_batch(KEY, [("a@example.com", None)], "http://127.0.0.1:8999/hook?secret=s")
    state.create_batch(KEY, [("b@example.com", None)], "http://example.com/hook")
    received: list[httpx.Request] = []
    attempts = iter([500, 200])

    def hook(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(next(attempts))

    clock.advance(1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(hook)) as sender:
        assert await deliver_callbacks(state, sender) == 1
        assert await deliver_callbacks(state, sender) == 0
    assert [str(r.url) for r in received] == ["http://127.0.0.1:8999/hook?secret=s"] * 2
    assert b'"status":"completed"' in received[-1].content
