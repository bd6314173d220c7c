"""The workers' HTTP listener: one small ASGI app per host:port, serving exactly the routes it is handed.

The workers process runs at most one listener per address. It knows no route of its own: `ops/probes.py` builds
the operations routes (/metrics, /livez, /readyz) and `workers.py` passes them in as an `Endpoint`. Any path
not handed in gets 404. Ports are bound before uvicorn starts, so a port in use is a one-line `ConfigError`
naming the setting (`METRICS_PORT: 127.0.0.1:9100 is already in use ...`), not a traceback.

Extension point: a feature that needs HTTP in the workers process builds its own Starlette routes and adds
another `Endpoint` with its own settings, e.g. the Bouncer callback::

    callbacks = Endpoint(settings.callback_host, settings.callback_port, "CALLBACK_PORT",
                         [Route("/bouncer/callback/{token}", handle_callback, methods=["POST"])])
    async with serving([ops_endpoint, callbacks]): ...

Endpoints on the same host and port are merged into one listener (their routes concatenated, the settings
named together in errors), so CALLBACK_PORT may equal METRICS_PORT or differ from it. Routes of different
endpoints must not share a path. uvicorn is run without its signal handlers: the process's own (queueing/
signals.py) stay in charge of shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from bouncer_queue.errors import ConfigError

log = logging.getLogger(__name__)

_START_TIMEOUT_SECONDS = 15.0
#: How long a stopping listener waits for requests in flight (a scrape, a Bouncer callback) before it cancels
#: them. uvicorn's default waits without limit, so one request that never ended could hold the workers process's
#: whole stop, SIGTERM and shutdown grace notwithstanding.
STOP_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class Endpoint:
    """Routes to serve on `host:port`; `setting` names the environment variable that chose the port."""

    host: str
    port: int
    setting: str
    routes: Sequence[BaseRoute]


@dataclass(frozen=True)
class Listener:
    """A running listener: its bound address, for logs and tests (port 0 resolves to the real port)."""

    host: str
    port: int
    setting: str


class _Server(uvicorn.Server):
    """uvicorn without its SIGINT/SIGTERM capture: the workers process handles signals itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def merge(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """One endpoint per distinct host:port, holding the routes of every endpoint given for it (port 0 never
    merges: each asks the OS for a port of its own)."""
    merged: list[Endpoint] = []
    for ep in endpoints:
        same = [i for i, m in enumerate(merged) if ep.port != 0 and (m.host, m.port) == (ep.host, ep.port)]
        if not same:
            merged.append(ep)
            continue
        seen = merged[same[0]]
        merged[same[0]] = Endpoint(ep.host, ep.port, f"{seen.setting}/{ep.setting}", [*seen.routes, *ep.routes])
    return merged


def create_app(routes: Sequence[BaseRoute]) -> Starlette:
    """The ASGI app of one listener: these routes, 404 for every other path."""
    return Starlette(routes=list(routes))


def bind(host: str, port: int, setting: str) -> socket.socket:
    """A listening socket on host:port; ConfigError (one line, naming `setting`) when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
        raise ConfigError(
            f"{setting}: {host}:{port} {reason}; choose another port or stop the process holding it"
        ) from None
    sock.setblocking(False)
    return sock


async def _start(endpoint: Endpoint) -> tuple[_Server, asyncio.Task[None], Listener]:
    sock = bind(endpoint.host, endpoint.port, endpoint.setting)
    config = uvicorn.Config(
        create_app(endpoint.routes),
        log_config=None,
        access_log=False,
        lifespan="off",
        ws="none",
        log_level="warning",
        timeout_graceful_shutdown=STOP_TIMEOUT_SECONDS,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"listener:{endpoint.port}")
    async with asyncio.timeout(_START_TIMEOUT_SECONDS):
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
    if task.done():
        sock.close()
        task.result()  # raises what stopped uvicorn
        raise RuntimeError(f"the listener on {endpoint.host}:{endpoint.port} stopped while starting")
    host, port = sock.getsockname()[:2]
    return server, task, Listener(str(host), int(port), endpoint.setting)


async def _stop(server: _Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    with contextlib.suppress(Exception):
        await task


@contextlib.asynccontextmanager
async def serving(endpoints: Iterable[Endpoint]) -> AsyncIterator[list[Listener]]:
    """Serve every endpoint (merged by address) until exit; every port is bound before this yields."""
    running: list[tuple[_Server, asyncio.Task[None]]] = []
    listeners: list[Listener] = []
    try:
        for endpoint in merge(endpoints):
            server, task, listener = await _start(endpoint)
            running.append((server, task))
            listeners.append(listener)
            log.info(
                "listening on http://%s:%d/",
                listener.host,
                listener.port,
                extra={"action": "listener_serving", "host": listener.host, "port": listener.port},
            )
        yield listeners
    finally:
        for server, task in reversed(running):
            await _stop(server, task)
