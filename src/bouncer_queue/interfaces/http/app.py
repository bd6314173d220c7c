"""`create_app(manager)`: the FastAPI app of `bouncer-queue serve`: the JSON API under /api/v1, the dashboard at /.

The lifespan starts and stops the one QueueManager every route shares (through app.state, never a module
global). Our errors become HTTP answers here, once: an unreadable list 422, an unknown queue 404, Redis or
the database away 503; messages are scrubbed of secrets. CORS is off unless API_CORS_ORIGINS names origins.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from bouncer_queue import __version__
from bouncer_queue.errors import (
    CreditsRefused,
    InputError,
    QueueBackendError,
    ReplayRefused,
    StorageError,
    UnknownQueueError,
    VerifierError,
)
from bouncer_queue.interfaces.dashboard.views import mount_dashboard
from bouncer_queue.interfaces.http.routes import health, operations, requests
from bouncer_queue.service import QueueManager, scrub

API_PREFIX = "/api/v1"
_STATUS_OF = {
    InputError: 422,
    CreditsRefused: 402,
    UnknownQueueError: 404,
    ReplayRefused: 409,
    StorageError: 503,
    QueueBackendError: 503,
}


def create_app(manager: QueueManager, *, dashboard: bool = True) -> FastAPI:
    """The app over `manager`, which the app starts and stops with its lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await manager.start()
        try:
            yield
        finally:
            await manager.stop()

    app = FastAPI(
        title="bouncer-queue",
        version=__version__,
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=f"{API_PREFIX}/redoc",
    )
    app.state.manager = manager
    for router in (requests.router, operations.router, health.router):
        app.include_router(router, prefix=API_PREFIX)
    app.add_exception_handler(VerifierError, _error_handler(manager))  # type: ignore[arg-type]
    origins = manager.settings.cors_origins()
    if origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_methods=["*"], allow_headers=["*"], expose_headers=["Location"]
        )
    if dashboard:
        mount_dashboard(app, manager)
    return app


def _error_handler(manager: QueueManager) -> object:
    async def handle(request: Request, exc: VerifierError) -> JSONResponse:
        code = next((c for kind, c in _STATUS_OF.items() if isinstance(exc, kind)), 500)
        return JSONResponse({"detail": scrub(manager.settings, str(exc))}, status_code=code)

    return handle
