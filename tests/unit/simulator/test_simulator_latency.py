"""Real-time verify latency and the Retry-After flag: the latency model, what the endpoint awaits, and that a
slow answer does not hold up other requests. The app's `sleep` is a recording fake, so nothing here waits."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import httpx
import pytest

from bouncer_queue.simulator import ManualClock, SimulatorConfig, SimulatorState, create_app, expected_result
from bouncer_queue.simulator.latency import SLOW_SECONDS, TYPICAL_SECONDS, latency_seconds

KEY = "sim-key-1"
HEADERS = {"x-api-key": KEY}
SEED = "latency-tests"


def _slow_domain() -> tuple[str, float]:
    """A domain the seed makes slow (2-15 s), and its latency."""
    for i in range(1000):
        domain = f"co{i}.example"
        latency = latency_seconds(f"a@{domain}", SEED)
        if latency >= SLOW_SECONDS[0]:
            return domain, latency
    raise AssertionError("no slow domain in 1000")


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def http(sleep: RecordingSleep) -> AsyncIterator[httpx.AsyncClient]:
    state = SimulatorState(SimulatorConfig(api_keys=(KEY,), seed=SEED, latency_scale=1.0), clock=ManualClock())
    app = create_app(state, sleep=sleep)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as c:
        yield c


def test_typical_latency_is_a_few_hundred_ms_and_deterministic() -> None:
    latencies = [latency_seconds(f"user{i}@example.com", SEED) for i in range(50)]
    assert all(TYPICAL_SECONDS[0] <= s <= TYPICAL_SECONDS[1] for s in latencies)
    assert latencies == [latency_seconds(f"USER{i}@example.com", SEED) for i in range(50)]


def test_slow_domain_times_out_only_under_a_short_timeout() -> None:
    domain, latency = _slow_domain()
    email = f"a@{domain}"
    short = expected_result(email, SEED, realtime=True, timeout=math.floor(latency))
    assert (short["status"], short["reason"]) == ("unknown", "timeout")
    assert short["domain"]["acceptAll"] == short["account"]["fullMailbox"] == "unknown" and "score" not in short
    assert expected_result(email, SEED, realtime=True, timeout=30)["reason"] != "timeout"


def test_never_answering_domain_is_like_the_docs_timeout_example() -> None:
    result = expected_result("bob@slow-mx.example", SEED, realtime=True, timeout=30)
    assert (result["status"], result["reason"]) == ("unknown", "timeout")
    assert result["domain"] == {"name": "slow-mx.example", "acceptAll": "unknown", "disposable": "no", "free": "no"}
    assert result["account"] == {"role": "no", "disabled": "unknown", "fullMailbox": "unknown"}


def test_realtime_has_about_five_points_more_unknown() -> None:
    emails = [f"user{i}@co{i % 200}.example" for i in range(10_000)]
    batch = sum(expected_result(e, SEED)["status"] == "unknown" for e in emails)
    realtime = sum(expected_result(e, SEED, realtime=True, timeout=10)["status"] == "unknown" for e in emails)
    assert 0.03 < (realtime - batch) / len(emails) < 0.07


async def test_verify_awaits_the_latency(http: httpx.AsyncClient, sleep: RecordingSleep) -> None:
    answer = await http.get("/v1.1/email/verify", params={"email": "ann@example.com"}, headers=HEADERS)
    assert answer.status_code == 200
    assert sleep.calls == [latency_seconds("ann@example.com", SEED)]


async def test_a_timed_out_verify_awaits_the_whole_timeout(http: httpx.AsyncClient, sleep: RecordingSleep) -> None:
    params = {"email": "bob@slow-mx.example", "timeout": "3"}
    answer = await http.get("/v1.1/email/verify", params=params, headers=HEADERS)
    assert answer.json()["reason"] == "timeout"
    assert sleep.calls == [3.0]


async def test_scale_zero_is_instant() -> None:
    sleep = RecordingSleep()
    state = SimulatorState(SimulatorConfig(latency_scale=0), clock=ManualClock())
    transport = httpx.ASGITransport(app=create_app(state, sleep=sleep))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as c:
        await c.get("/v1.1/email/verify", params={"email": "bob@slow-mx.example"}, headers=HEADERS)
    assert sleep.calls == [0.0]


async def test_a_slow_verify_does_not_block_other_requests() -> None:
    gate, entered = asyncio.Event(), []

    async def held(seconds: float) -> None:
        entered.append(seconds)
        await gate.wait()

    state = SimulatorState(SimulatorConfig(), clock=ManualClock())
    transport = httpx.ASGITransport(app=create_app(state, sleep=held))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as c:
        pending = [
            asyncio.create_task(c.get("/v1.1/email/verify", params={"email": e}, headers=HEADERS))
            for e in ("a@example.com", "b@slow-mx.example")
        ]
        for _ in range(10_000):
            if len(entered) == 2:
                break
            await asyncio.sleep(0)
        assert (await c.get("/v1.1/credits", headers=HEADERS)).status_code == 200
        assert len(entered) == 2 and not any(task.done() for task in pending)
        gate.set()
        assert [(await task).status_code for task in pending] == [200, 200]


async def test_retry_after_header_behind_a_flag() -> None:
    clock = ManualClock()
    config = SimulatorConfig(credits_limit=2, window_seconds=60, retry_after_header=True)
    transport = httpx.ASGITransport(app=create_app(SimulatorState(config, clock=clock)))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as c:
        await c.get("/v1.1/credits", headers=HEADERS)
        clock.advance(10)
        await c.get("/v1.1/credits", headers=HEADERS)
        clock.advance(0.5)
        limited = await c.get("/v1.1/credits", headers=HEADERS)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "50"
    assert limited.json()["message"] == "too many requests"
