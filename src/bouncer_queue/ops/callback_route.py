"""The HTTP face of Bouncer callbacks: one Starlette route, served by the workers' listener (ops/listener.py).

`callback_routes(handle)` is the route `POST /bouncer/callback/{token}`, ready to mount on any Starlette or
FastAPI app (`routes=[*callback_routes(handle), ...]`); `handle(token, body)` is `pipeline.callbacks
.handle_callback` bound to a StageContext. Answers: 200 when the callback was applied (or needed nothing),
404 for an unknown or reused token, 400 for a body that is not a batch object, 503 while the database is away
(Bouncer retries). workers.py hands the route to the listener as an Endpoint on CALLBACK_HOST:CALLBACK_PORT;
the listener writes no access log, which matters here: the path holds the secret token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bouncer_queue.errors import StorageError
from bouncer_queue.pipeline.callbacks import CALLBACK_PATH, CallbackOutcome

log = logging.getLogger(__name__)

CallbackHandler = Callable[[str, Any], Awaitable[CallbackOutcome]]

_STATUS = {CallbackOutcome.NOT_FOUND: 404, CallbackOutcome.INVALID: 400}


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
