"""`drop_create_response_rate` and `create_latency_seconds`: a create that is made and charged, then not answered."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from bouncer_queue.bouncer import BouncerClient, BouncerUnavailable
from bouncer_queue.interfaces.cli import app
from bouncer_queue.simulator import SimulatorConfig, SimulatorState, create_app
from bouncer_queue.storage.records import BatchEmail

KEY = "drop-key"


def _client(state: SimulatorState, sleeps: list[float]) -> BouncerClient:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    transport = httpx.ASGITransport(app=create_app(state, sleep=sleep))
    return BouncerClient(httpx.AsyncClient(base_url="http://sim/v1.1", transport=transport), lambda: SecretStr(KEY))


async def test_a_dropped_answer_still_creates_and_charges_the_batch() -> None:
    state = SimulatorState(SimulatorConfig(api_keys=(KEY,), credits=10, drop_create_response_rate=1.0))
    async with _client(state, []) as client:
        with pytest.raises(BouncerUnavailable) as caught:
            await client.create_batch([BatchEmail("a@example.com"), BatchEmail("b@example.com")])
    assert caught.value.request_sent
    assert state.batch_creations == 1 and state.credits_of(KEY) == 8
    [batch] = state.snapshot()["batches"]
    assert batch["answer_dropped"] is True
    assert [(r["path"], r["status"]) for r in state.requests] == [("/v1.1/email/verify/batch", 0)]


async def test_the_drop_rate_is_a_reproducible_share_and_latency_waits_after_creating() -> None:
    config = SimulatorConfig(api_keys=(KEY,), drop_create_response_rate=0.3, create_latency_seconds=2.5, seed="s")
    state, sleeps = SimulatorState(config), []
    async with _client(state, sleeps) as client:
        for i in range(40):
            try:
                await client.create_batch([BatchEmail(f"u{i}@example.com")])
            except BouncerUnavailable:
                pass
    dropped = [b["answer_dropped"] for b in state.snapshot()["batches"]]
    assert 0 < sum(dropped) < 40 and state.batch_creations == 40
    assert sleeps == [2.5] * 40
    again = SimulatorState(config)
    for i in range(40):
        again.create_batch(KEY, [(f"u{i}@example.com", None)], None)
    assert [b["answer_dropped"] for b in again.snapshot()["batches"]] == dropped


def test_cli_options(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[SimulatorConfig] = []
    monkeypatch.setattr("bouncer_queue.simulator.server.run", lambda host, port, config: calls.append(config))
    args = ["simulator", "--drop-create-response-rate", "0.05", "--create-latency", "1.5"]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert (calls[0].drop_create_response_rate, calls[0].create_latency_seconds) == (0.05, 1.5)
    assert CliRunner().invoke(app, ["simulator", "--drop-create-response-rate", "2"]).exit_code != 0
