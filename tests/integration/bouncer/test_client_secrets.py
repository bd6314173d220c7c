"""The API key never shows in exception messages, reprs or log records, whatever goes wrong."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest
from pydantic import SecretStr

from bouncer_queue.bouncer import BouncerClient, BouncerError, make_http_client
from bouncer_queue.simulator import ManualClock, SimulatorConfig, SimulatorState, create_app

SECRET = "sk-live-TOPSECRET-91c2e"


async def _collect_errors(client: BouncerClient) -> list[BouncerError]:
    errors: list[BouncerError] = []
    calls = [
        client.credits(),
        client.create_batch([]),
        client.get_batch("nope"),
        client.download("nope", filter="x"),
        client.verify("a@example.com"),
    ]
    for call in calls:
        try:
            await call
        except BouncerError as exc:
            errors.append(exc)
    return errors


async def test_key_absent_from_errors_reprs_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    state = SimulatorState(SimulatorConfig(api_keys=("other",), credits_limit=1), clock=ManualClock())
    http = make_http_client("http://sim/v1.1", timeout=5, connect_timeout=5, max_connections=2,
                            transport=httpx.ASGITransport(app=create_app(state)))  # fmt: skip
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    offline = make_http_client(f"http://127.0.0.1:{closed}/v1.1", timeout=1, connect_timeout=1, max_connections=1)
    errors: list[BouncerError] = []
    for transport_client in (http, offline):
        async with BouncerClient(transport_client, lambda: SecretStr(SECRET)) as client:
            errors += await _collect_errors(client)
            assert SECRET not in repr(client)
        state.set_credits(SECRET, 0)  # the simulator may know the key; its introspection must not show it
    snapshot = state.snapshot()

    assert len(errors) == 10
    shown = [str(e) for e in errors] + [repr(e) for e in errors] + [str(e.__cause__) for e in errors]
    shown += [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records] + [str(snapshot)]
    assert not [text for text in shown if SECRET in text]
