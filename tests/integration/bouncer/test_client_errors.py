"""Every error class the client raises, produced by the simulator (or a MockTransport where it cannot be)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from pydantic import SecretStr

from bouncer_queue.bouncer import (
    AuthError,
    BadRequest,
    BatchBody,
    BatchNotFound,
    BatchStateError,
    BouncerClient,
    BouncerUnavailable,
    Forbidden,
    InsufficientCredits,
    RateLimited,
    ServerError,
    make_http_client,
)
from bouncer_queue.simulator import ManualClock, SimulatorConfig, SimulatorState, create_app
from bouncer_queue.storage.records import BatchEmail

API_KEY = "sk-errors-key"  # the simulators built here accept any key; `sim_state` accepts only `api_key`


def _client(transport: httpx.AsyncBaseTransport, key: str | None = API_KEY, timeout: float = 5) -> BouncerClient:
    http = make_http_client("http://bouncer/v1.1", timeout=timeout, connect_timeout=timeout, max_connections=2,
                            transport=transport)  # fmt: skip
    return BouncerClient(http, lambda: SecretStr(key) if key else None)


def _simulated(config: SimulatorConfig, clock: ManualClock | None = None) -> BouncerClient:
    state = SimulatorState(config, clock=clock or ManualClock())
    return _client(httpx.ASGITransport(app=create_app(state)))


def _mock(handler: Callable[[httpx.Request], httpx.Response]) -> BouncerClient:
    return _client(httpx.MockTransport(handler))


async def test_unknown_key_is_auth_error(sim_state: SimulatorState) -> None:
    async with _client(httpx.ASGITransport(app=create_app(sim_state)), key="wrong-key") as client:
        with pytest.raises(AuthError) as caught:
            await client.credits()
    assert (caught.value.status_code, caught.value.message, caught.value.retryable) == (401, "user not found", False)


async def test_missing_key_raises_before_any_request(sim_state: SimulatorState) -> None:
    async with _client(httpx.ASGITransport(app=create_app(sim_state)), key=None) as client:
        with pytest.raises(AuthError):
            await client.credits()
    assert sim_state.requests == []


async def test_insufficient_credits_reports_the_balance(
    sim_state: SimulatorState, bouncer: BouncerClient, api_key: str
) -> None:
    sim_state.set_credits(api_key, 2)
    with pytest.raises(InsufficientCredits) as caught:
        await bouncer.create_batch([BatchEmail(f"u{i}@example.com") for i in range(3)])
    assert (caught.value.status_code, caught.value.credits_left, caught.value.message) == (402, 2, "2 credits left")


async def test_string_status_bodies_parse_the_same() -> None:
    async with _simulated(SimulatorConfig(credits=0, string_status=True)) as client:
        with pytest.raises(InsufficientCredits) as caught:
            await client.create_batch([BatchEmail("u@example.com")])
    assert caught.value.credits_left == 0


async def test_forbidden_from_a_403() -> None:
    async with _mock(lambda _: httpx.Response(403, json={"status": "403", "error": "Forbidden"})) as client:
        with pytest.raises(Forbidden) as caught:
            await client.credits()
    assert caught.value.message == "Forbidden"


async def test_unknown_batch_is_not_found(bouncer: BouncerClient) -> None:
    with pytest.raises(BatchNotFound, match="request 0123456789abcdef01234567 does not exist"):
        await bouncer.get_batch("0123456789abcdef01234567")


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.create_batch([]),
        lambda c: c.verify("a@example.com", timeout=31),
        lambda c: c.verify(""),
    ],
    ids=["empty-batch", "bad-timeout", "no-email"],
)
async def test_malformed_requests_are_bad_request(bouncer: BouncerClient, call: Callable[..., object]) -> None:
    with pytest.raises(BadRequest) as caught:
        await call(bouncer)  # type: ignore[misc]
    assert caught.value.status_code == 400 and not isinstance(caught.value, BatchStateError)


async def test_bad_download_filter_is_bad_request(bouncer: BouncerClient, clock: ManualClock) -> None:
    batch = await bouncer.create_batch([BatchEmail("a@example.com")])
    clock.advance(1)
    with pytest.raises(BadRequest):
        await bouncer.download(batch.batch_id, filter="maybe")


async def test_wrong_batch_states(bouncer: BouncerClient, clock: ManualClock) -> None:
    batch = await bouncer.create_batch([BatchEmail("a@example.com")])
    with pytest.raises(BatchStateError, match="not completed yet") as early:
        await bouncer.download(batch.batch_id)
    with pytest.raises(BatchStateError, match="cannot be deleted") as busy:
        await bouncer.delete_batch(batch.batch_id)
    clock.advance(1)
    with pytest.raises(BatchStateError, match="has to be running") as late:
        await bouncer.finish_batch(batch.batch_id)
    assert [e.value.status_code for e in (early, busy, late)] == [400, 405, 400]


async def test_rate_limit_is_retryable() -> None:
    async with _simulated(SimulatorConfig(credits_limit=2)) as client:
        await client.credits()
        await client.credits()
        with pytest.raises(RateLimited) as caught:
            await client.credits()
    assert caught.value.retryable and caught.value.message == "too many requests"


async def test_injected_503_is_retryable_server_error() -> None:
    async with _simulated(SimulatorConfig(fail_rate=1.0)) as client:
        with pytest.raises(ServerError) as caught:
            await client.credits()
    assert caught.value.status_code == 503 and caught.value.retryable


async def test_non_json_error_body() -> None:
    async with _mock(lambda _: httpx.Response(502, text="<html>Bad gateway</html>")) as client:
        with pytest.raises(ServerError, match="Bad gateway"):
            await client.credits()


async def test_unreadable_success_body_means_request_sent() -> None:
    async with _mock(lambda _: httpx.Response(200, text="not json")) as client:
        with pytest.raises(BouncerUnavailable) as caught:
            await client.create_batch([BatchEmail("a@example.com")])
    assert caught.value.request_sent and caught.value.retryable


async def test_unreadable_download_body_means_request_sent() -> None:
    # The body is released before its rows are built; the error still names the answer's status.
    async with _mock(lambda _: httpx.Response(200, content=b"\xff[not json")) as client:
        with pytest.raises(BouncerUnavailable, match="HTTP 200") as caught:
            await client.download("b1")
    assert caught.value.request_sent


async def test_create_sends_the_body_encoded_ahead_as_json_would() -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(201, json={"batchId": "b1", "status": "queued"})

    emails = [BatchEmail("a@example.com"), BatchEmail("b@example.com", "Bé Ñame")]
    async with _mock(answer) as client:
        await client.create_batch(BatchBody.of(emails))
        await client.create_batch(emails)
    as_json = httpx.Request(
        "POST", "http://x", json=[{"email": "a@example.com"}, {"email": "b@example.com", "name": "Bé Ñame"}]
    )
    assert [r.content for r in sent] == [as_json.read()] * 2
    assert all(r.headers["content-type"] == "application/json" for r in sent)
    assert BatchBody.of(emails).count == 2


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> AsyncIterator[int]:
    """A port that accepts connections (kernel backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


async def _unavailable(port: int, timeout: float = 5) -> BouncerUnavailable:
    http = make_http_client(f"http://127.0.0.1:{port}/v1.1", timeout=timeout, connect_timeout=5, max_connections=2)
    async with BouncerClient(http, lambda: SecretStr(API_KEY)) as client:
        with pytest.raises(BouncerUnavailable) as caught:
            await client.create_batch([BatchEmail("a@example.com")])
    return caught.value


async def test_closed_port_means_request_not_sent(closed_port: int) -> None:
    error = await _unavailable(closed_port)
    assert error.retryable and not error.request_sent


async def test_read_timeout_means_request_may_have_been_sent(silent_port: int) -> None:
    error = await _unavailable(silent_port, timeout=0.3)
    assert error.retryable and error.request_sent


@pytest.mark.parametrize(
    ("exc", "sent"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("slow"), False),
        (httpx.PoolTimeout("pool"), False),
        (httpx.ReadTimeout("read"), True),
        (httpx.WriteTimeout("write"), True),
        (httpx.ReadError("reset"), True),
        (httpx.RemoteProtocolError("closed"), True),
    ],
)
async def test_transport_errors_map_to_request_sent(exc: httpx.TransportError, sent: bool) -> None:
    reported: list[tuple[str, int]] = []

    def fail(_: httpx.Request) -> httpx.Response:
        raise exc

    http = make_http_client("http://bouncer/v1.1", timeout=1, connect_timeout=1, max_connections=1,
                            transport=httpx.MockTransport(fail))  # fmt: skip
    async with BouncerClient(http, lambda: SecretStr(API_KEY), on_response=lambda g, s: reported.append((g, s))) as c:
        with pytest.raises(BouncerUnavailable) as caught:
            await c.get_batch("abc")
    assert caught.value.request_sent is sent
    assert reported == [("batch_status", 0)]
