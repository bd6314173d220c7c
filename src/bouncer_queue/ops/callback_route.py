"""The HTTP face of Bouncer callbacks: one Starlette route, and a small server for it in the workers process.

`callback_routes(handle)` is the route `POST /bouncer/callback/{token}`, ready to mount on any Starlette or
FastAPI app (`routes=[*callback_routes(handle), ...]`); `handle(token, body)` is `pipeline.callbacks
.handle_callback` bound to a StageContext. Answers: 200 when the callback was applied (or needed nothing),
404 for an unknown or reused token, 400 for a body that is not a batch object, 503 while the database is away
(Bouncer retries). `serving_asgi` runs an app on CALLBACK_HOST:CALLBACK_PORT beside the workers, without
uvicorn's access log (the path holds the secret token) and without its signal handlers (the workers own them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bouncer_queue.errors import ConfigError, StorageError
from bouncer_queue.pipeline.callbacks import CALLBACK_PATH, CallbackOutcome

log = logging.getLogger(__name__)

CallbackHandler = Callable[[str, Any], Awaitable[CallbackOutcome]]

_STATUS = {CallbackOutcome.NOT_FOUND: 404, CallbackOutcome.INVALID: 400}
_START_TIMEOUT_SECONDS = 15.0


def callback_routes(handle: CallbackHandler) -> list[Route]:
    """The callback route, for a listener of any kind."""

    async def endpoint(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        try:
            outcome = await handle(request.path_params["token"], body)
        except StorageError:
            return JSONResponse({"error": "the ledger is unavailable; try again"}, status_code=503)
        return JSONResponse({"outcome": outcome.value}, status_code=_STATUS.get(outcome, 200))

    return [Route(f"{CALLBACK_PATH}/{{token}}", endpoint, methods=["POST"])]


def callback_app(handle: CallbackHandler) -> Starlette:
    """A stand-alone ASGI app serving only the callback route."""
    return Starlette(routes=callback_routes(handle))


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The workers process handles SIGTERM/SIGINT itself (queueing/signals.py); uvicorn must not take them.
        yield


def _bind(host: str, port: int) -> socket.socket:
    try:
        sock = socket.create_server((host, port), reuse_port=False)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} for Bouncer callbacks: {exc.strerror}") from None
    return sock


@contextlib.asynccontextmanager
async def serving_asgi(app: Any, host: str, port: int) -> AsyncIterator[tuple[str, int]]:
    """Serve `app` on host:port (0 picks a free port) for the block; yields the bound (host, port)."""
    sock = _bind(host, port)
    bound = sock.getsockname()[:2]
    config = uvicorn.Config(app, access_log=False, log_level="warning", lifespan="off", ws="none")
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="callback-listener")
    try:
        async with asyncio.timeout(_START_TIMEOUT_SECONDS):
            while not server.started and not task.done():
                await asyncio.sleep(0.02)
        if task.done():
            task.result()
            raise ConfigError(f"the callback listener on {host}:{port} did not start")
        yield str(bound[0]), int(bound[1])
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
