"""The workers' listener: routes handed in are served, other paths 404, endpoints sharing a port merge, a port in
use is a one-line ConfigError naming the setting; /livez and /readyz judge their checks."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bouncer_queue.errors import ConfigError
from bouncer_queue.ops import listener as listener_module
from bouncer_queue.ops.heartbeat import Heartbeat, make_info
from bouncer_queue.ops.listener import Endpoint, serving
from bouncer_queue.ops.metrics import Metrics
from bouncer_queue.ops.probes import Liveness, LoopMonitor, ops_routes


async def _callback(request: Request) -> Response:
    return PlainTextResponse(f"got {request.path_params['token']}: {(await request.body()).decode()}")


def _callback_endpoint(port: int) -> Endpoint:
    routes = [Route("/bouncer/callback/{token}", _callback, methods=["POST"])]
    return Endpoint("127.0.0.1", port, "CALLBACK_PORT", routes)


class _Redis:
    """Enough of a redis client for Heartbeat.beat: a pipeline that records nothing."""

    def pipeline(self, transaction: bool = True) -> _Redis:
        return self

    async def __aenter__(self) -> _Redis:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def set(self, *args: object, **kwargs: object) -> None:
        return None

    def sadd(self, *args: object) -> None:
        return None

    async def execute(self) -> list[object]:
        return []


def _heartbeat() -> Heartbeat:
    info = make_info("h:1", "h", 1, ["email-verification"], "0")
    return Heartbeat(_Redis(), "{t}", info, ttl_seconds=30)  # type: ignore[arg-type]


async def _ok() -> None:
    return None


async def _down() -> None:
    raise OSError("connection refused to postgresql://user:secret-pw@db")


def _ops_endpoint(beat: Heartbeat, loop: LoopMonitor, port: int = 0) -> Endpoint:
    metrics = Metrics()
    metrics.set_credits_left(77)
    routes = ops_routes(metrics, Liveness(loop, beat), {"redis": _ok, "database": _down})
    return Endpoint("127.0.0.1", port, "METRICS_PORT", routes)


async def test_routes_handed_in_are_served_and_other_paths_get_404() -> None:
    beat = _heartbeat()
    async with LoopMonitor().running() as loop, serving([_ops_endpoint(beat, loop)]) as listeners:
        base = f"http://127.0.0.1:{listeners[0].port}"
        async with httpx.AsyncClient(base_url=base) as http:
            metrics = await http.get("/metrics")
            assert metrics.status_code == 200 and "credits_left 77.0" in metrics.text
            live = await http.get("/livez")
            assert live.status_code == 503 and live.json()["checks"]["heartbeat"].startswith("stale")
            await beat.beat()
            live = await http.get("/livez")
            assert live.status_code == 200 and live.json() == {
                "status": "ok",
                "checks": {"event_loop": "ok", "heartbeat": "ok"},
            }
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"] == {"redis": "ok", "database": "OSError"}
            assert "secret-pw" not in ready.text
            assert (await http.get("/")).status_code == 404
            assert (await http.get("/bouncer/callback/x")).status_code == 404


async def test_endpoints_on_one_port_share_one_listener_and_on_two_ports_get_two() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    beat = _heartbeat()
    async with LoopMonitor().running() as loop:
        shared = [_ops_endpoint(beat, loop, port), _callback_endpoint(port)]
        async with serving(shared) as listeners:
            assert [(lst.port, lst.setting) for lst in listeners] == [(port, "METRICS_PORT/CALLBACK_PORT")]
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                answer = await http.post("/bouncer/callback/abc", content="done")
                assert answer.status_code == 200 and answer.text == "got abc: done"
                assert (await http.get("/metrics")).status_code == 200
        async with serving([_ops_endpoint(beat, loop), _callback_endpoint(0)]) as listeners:
            assert len({lst.port for lst in listeners}) == 2
            async with httpx.AsyncClient() as http:
                callback = await http.post(f"http://127.0.0.1:{listeners[1].port}/bouncer/callback/z")
                assert callback.status_code == 200
                assert (await http.get(f"http://127.0.0.1:{listeners[1].port}/metrics")).status_code == 404


async def test_a_port_in_use_is_a_one_line_error_naming_the_setting() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            async with serving([_callback_endpoint(port)]):
                pass
    message = str(caught.value)
    assert message == (
        f"CALLBACK_PORT: 127.0.0.1:{port} is already in use; choose another port or stop the process holding it"
    )


async def test_a_request_that_never_ends_cannot_hold_the_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    # uvicorn waits for requests in flight without limit by default: a stuck one held a workers process's stop.
    monkeypatch.setattr(listener_module, "STOP_TIMEOUT_SECONDS", 1)
    entered, never = asyncio.Event(), asyncio.Event()

    async def stuck(request: Request) -> Response:
        entered.set()
        await never.wait()
        return PlainTextResponse("unreachable")

    endpoint = Endpoint("127.0.0.1", 0, "METRICS_PORT", [Route("/stuck", stuck)])
    async with httpx.AsyncClient(timeout=None) as http:
        context = serving([endpoint])
        listeners = await context.__aenter__()
        request = asyncio.create_task(http.get(f"http://127.0.0.1:{listeners[0].port}/stuck"))
        await entered.wait()
        # A hang here is the failure; the bound is only there so that it fails instead of hanging the suite.
        await asyncio.wait_for(context.__aexit__(None, None, None), 120)
        try:
            answered: int | None = (await request).status_code  # the cancelled handler's 500
        except httpx.HTTPError:
            answered = None  # or the connection closed under it
    assert answered != 200 and not never.is_set()
