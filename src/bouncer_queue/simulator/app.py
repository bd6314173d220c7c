"""create_app(state): the simulator's HTTP face, Bouncer's v1.1 paths plus /__simulator introspection.

Handlers only parse requests and render answers; every rule is a `SimulatorState` method. Errors are sent in
Bouncer's shape `{"status": 404, "error": "Not Found", "message": "..."}` (status as a string with
`string_status`). CSV downloads (`Accept: text/csv`) use the header `CSV_COLUMNS`:
email,name,status,reason,domain,acceptAll,disposable,free,role,disabled,fullMailbox,dnsType,dnsRecord,
provider,score,toxic,toxicity,retryAfter. When served by uvicorn, a lifespan task POSTs the final batch
object to each batch's `?callback=` URL (loopback hosts only, a few attempts).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import csv
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bouncer_queue.simulator.state import SimulatorHTTPError, SimulatorState, fingerprint

logger = logging.getLogger(__name__)

CSV_COLUMNS = (
    "email,name,status,reason,domain,acceptAll,disposable,free,role,disabled,fullMailbox,"
    "dnsType,dnsRecord,provider,score,toxic,toxicity,retryAfter"
).split(",")
BATCH_PATH = "/v1.1/email/verify/batch/{batch_id}"
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_CALLBACK_TICK_SECONDS = 0.2


def create_app(state: SimulatorState, *, callback_transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The simulator as an ASGI app over `state` (use with httpx.ASGITransport or uvicorn)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_callback_loop(state, callback_transport))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="Bouncer simulator", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.simulator = state
    app.include_router(_api_router(state))
    app.include_router(_introspection_router(state))
    app.middleware("http")(_request_logger(state))
    app.add_exception_handler(SimulatorHTTPError, _error_handler(state))
    app.add_exception_handler(StarletteHTTPException, _error_handler(state))
    return app


def error_response(status: int, message: str, *, string_status: bool = False) -> JSONResponse:
    """Bouncer's error body for `status`."""
    body = {"status": str(status) if string_status else status, "error": HTTPStatus(status).phrase, "message": message}
    return JSONResponse(body, status_code=status)


def _error_handler(state: SimulatorState) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handle(_: Request, exc: Exception) -> Response:
        if isinstance(exc, SimulatorHTTPError):
            status, message = exc.status, exc.message
        else:
            status = getattr(exc, "status_code", 500)
            message = str(getattr(exc, "detail", "")).lower() or "error"
        return error_response(status, message, string_status=state.config.string_status)

    return handle


def _request_logger(state: SimulatorState) -> Callable[..., Awaitable[Response]]:
    async def record(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        state.record_request(request.method, request.url.path, response.status_code, api_key_of(request))
        return response

    return record


def api_key_of(request: Request) -> str | None:
    """The key from `x-api-key`, or the password of Basic auth with an empty user (`curl -u :KEY`)."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2] or None


def _guard(state: SimulatorState, request: Request, group: str) -> str:
    key = state.authenticate(api_key_of(request))
    state.admit(key, group)
    return key


def _api_router(state: SimulatorState) -> APIRouter:
    router = APIRouter(prefix="/v1.1")

    @router.post("/email/verify/batch")
    async def create_batch(request: Request) -> Response:
        key = _guard(state, request, "create")
        entries = await _batch_entries(request)
        return JSONResponse(state.create_batch(key, entries, request.query_params.get("callback")))

    @router.get("/email/verify/batch/{batch_id}")
    async def batch_status(request: Request, batch_id: str) -> Response:
        key = _guard(state, request, "batch")
        with_stats = request.query_params.get("with-stats", "false").lower() == "true"
        return JSONResponse(state.batch_status(key, batch_id, with_stats=with_stats))

    @router.get("/email/verify/batch/{batch_id}/download")
    async def download(request: Request, batch_id: str) -> Response:
        key = _guard(state, request, "batch")
        results = state.download(key, batch_id, request.query_params.get("download", "all"))
        if "text/csv" in request.headers.get("accept", ""):
            return Response(results_csv(results), media_type="text/csv")
        return JSONResponse(results)

    @router.post("/email/verify/batch/{batch_id}/finish")
    async def finish(request: Request, batch_id: str) -> Response:
        state.finish(_guard(state, request, "batch"), batch_id)
        return JSONResponse({}, status_code=202)

    @router.delete("/email/verify/batch/{batch_id}")
    async def delete(request: Request, batch_id: str) -> Response:
        state.delete(_guard(state, request, "batch"), batch_id)
        return JSONResponse({})

    @router.get("/credits")
    async def credits(request: Request) -> Response:
        return JSONResponse({"credits": state.credits_of(_guard(state, request, "credits"))})

    @router.get("/email/verify")
    async def verify(request: Request) -> Response:
        key = _guard(state, request, "verify")
        email = request.query_params.get("email", "")
        if not email.strip():
            raise SimulatorHTTPError(400, "email is required")
        timeout = _timeout_param(request.query_params.get("timeout", "10"))
        toxicity = request.query_params.get("with-toxicity", "false").lower() == "true"
        return JSONResponse(state.verify(key, email, timeout=timeout, with_toxicity=toxicity))

    return router


def _timeout_param(raw: str) -> int:
    try:
        timeout = int(raw)
    except ValueError:
        raise SimulatorHTTPError(400, "timeout must be an integer between 1 and 30") from None
    if not 1 <= timeout <= 30:
        raise SimulatorHTTPError(400, "timeout must be an integer between 1 and 30")
    return timeout


async def _batch_entries(request: Request) -> list[tuple[str, str | None]]:
    """(email, name) pairs from a JSON array of objects, or from text/plain lines (`skip-header`)."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("text/plain"):
        lines = [line.strip() for line in raw.decode("utf-8", "replace").splitlines()]
        if request.query_params.get("skip-header", "false").lower() == "true":
            lines = lines[1:]
        return [(line.split(",")[0].strip(), None) for line in lines if line]
    try:
        body = json.loads(raw)
    except ValueError:
        raise SimulatorHTTPError(400, "invalid json body") from None
    if not isinstance(body, list):
        raise SimulatorHTTPError(400, "body must be an array of {email, name}")
    return [_entry(item) for item in body]


def _entry(item: Any) -> tuple[str, str | None]:
    if not isinstance(item, dict) or not isinstance(item.get("email"), str):
        raise SimulatorHTTPError(400, "every element needs an email string")
    name = item.get("name")
    if name is not None and not isinstance(name, str):
        raise SimulatorHTTPError(400, "name must be a string")
    return item["email"], name


def results_csv(results: list[dict[str, Any]]) -> str:
    """Results flattened to the CSV_COLUMNS layout."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for result in results:
        domain, account, dns = result.get("domain", {}), result.get("account", {}), result.get("dns", {})
        flat = {**domain, **account, **result, "domain": domain.get("name")}
        # `name` is the caller's echoed name; domain.name must not leak into that column.
        flat.update(name=result.get("name"), dnsType=dns.get("type"), dnsRecord=dns.get("record"))
        writer.writerow("" if flat.get(column) is None else flat[column] for column in CSV_COLUMNS)
    return out.getvalue()


def _introspection_router(state: SimulatorState) -> APIRouter:
    router = APIRouter(prefix="/__simulator")

    @router.get("/requests")
    async def requests() -> Response:
        return JSONResponse(state.requests)

    @router.get("/state")
    async def snapshot() -> Response:
        return JSONResponse(state.snapshot())

    @router.post("/credits")
    async def set_credits(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            key, credits = body["api_key"], body["credits"]
        except (ValueError, KeyError, TypeError):
            raise SimulatorHTTPError(400, 'body must be {"api_key": "...", "credits": n}') from None
        if not isinstance(key, str) or not key or not isinstance(credits, int):
            raise SimulatorHTTPError(400, 'body must be {"api_key": "...", "credits": n}')
        state.set_credits(key, credits)
        return JSONResponse({"key": fingerprint(key), "credits": credits})

    return router


async def deliver_callbacks(state: SimulatorState, http: httpx.AsyncClient, *, attempts: int | None = None) -> int:
    """POST every due callback (loopback URLs only), retrying each a few times; return how many arrived."""
    delivered = 0
    for url, body in state.take_callbacks():
        if urlsplit(url).hostname not in _LOOPBACK:
            logger.warning("simulator callback to a non-loopback host dropped", extra={"action": "callback_dropped"})
            continue
        delivered += await _post_with_retries(http, url, body, attempts or state.config.callback_attempts)
    return delivered


async def _post_with_retries(http: httpx.AsyncClient, url: str, body: dict[str, Any], attempts: int) -> int:
    for attempt in range(attempts):
        try:
            response = await http.post(url, json=body)
            if response.is_success:
                return 1
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1 * (attempt + 1))
    return 0


async def _callback_loop(state: SimulatorState, transport: httpx.AsyncBaseTransport | None) -> None:
    async with httpx.AsyncClient(transport=transport, timeout=5.0) as http:
        while True:
            await asyncio.sleep(_CALLBACK_TICK_SECONDS)
            await deliver_callbacks(state, http)
