"""create_app(state): the simulator's HTTP face, Bouncer's v1.1 paths, /v1/toxicity and /__simulator introspection.

Handlers only parse requests and render answers; every rule is a `SimulatorState` method. Errors are sent in
Bouncer's shape `{"status": 404, "error": "Not Found", "message": "..."}` (status as a string with
`string_status`). CSV downloads (`Accept: text/csv`) use the header `CSV_COLUMNS`:
email,name,status,reason,domain,acceptAll,disposable,free,role,disabled,fullMailbox,dnsType,dnsRecord,
provider,score,toxic,toxicity,retryAfter. When served by uvicorn, a lifespan task POSTs the final batch
object to each batch's `?callback=` URL (`callbacks.py`). Real-time verify answers after its simulated
latency with an awaited `sleep` (injectable), so slow answers never block other requests. A create draws no
verdicts: served by uvicorn, a lifespan task draws them between requests (`verdict_loop`); otherwise they are
drawn when first asked for.

A create drawn by `drop_create_response_rate` creates and charges the batch, then closes the connection instead
of answering (the app's outermost `send` finds uvicorn's transport; in-process, httpx's own "server
disconnected" error is raised); the request log records it with status 0. `create_latency_seconds` holds every
create's answer back after the batch exists, so a caller can be stopped mid-call.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import csv
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bouncer_queue.aio import cancel_and_wait
from bouncer_queue.simulator.callbacks import callback_loop
from bouncer_queue.simulator.state import SimulatorHTTPError, SimulatorState, fingerprint

Sleep = Callable[[float], Awaitable[None]]

CSV_COLUMNS = (
    "email,name,status,reason,domain,acceptAll,disposable,free,role,disabled,fullMailbox,"
    "dnsType,dnsRecord,provider,score,toxic,toxicity,retryAfter"
).split(",")
BATCH_PATH = "/v1.1/email/verify/batch/{batch_id}"
#: Verdicts drawn between two looks at the requests (about 10 ms of work), and the pause when none are left.
_VERDICTS_PER_STEP = 200
_VERDICT_IDLE_SECONDS = 0.05
_VERDICT_YIELD_SECONDS = 0.005
#: Scope key a handler sets to have its answer dropped (the connection closed instead).
_DROP_ANSWER = "simulator.drop_answer"


class _SimulatorApp(FastAPI):
    """FastAPI, with the one thing it cannot do: close the connection instead of answering."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            send = _droppable(scope, send)
        await super().__call__(scope, receive, send)


def _droppable(scope: dict[str, Any], send: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    async def send_or_drop(message: Any) -> None:
        if not scope.get(_DROP_ANSWER):
            await send(message)
            return
        if message["type"] != "http.response.start":
            return
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if transport is None:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        transport.close()
        for _ in range(3):  # let uvicorn see the disconnect, so it does not try to answer 500 instead
            await asyncio.sleep(0)

    return send_or_drop


def create_app(
    state: SimulatorState,
    *,
    callback_transport: httpx.AsyncBaseTransport | None = None,
    sleep: Sleep = asyncio.sleep,
) -> FastAPI:
    """The simulator as an ASGI app over `state` (use with httpx.ASGITransport or uvicorn).

    `sleep` waits out real-time verify latency; tests pass a recording fake.
    """

    busy = Busy()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(callback_loop(state, callback_transport))]
        tasks.append(asyncio.create_task(verdict_loop(state, busy)))
        try:
            yield
        finally:
            await cancel_and_wait(*tasks)

    app = _SimulatorApp(title="Bouncer simulator", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.simulator = state
    app.include_router(_api_router(state, sleep))
    app.include_router(_toxicity_router(state))
    app.include_router(_introspection_router(state))
    app.middleware("http")(_request_logger(state, busy))
    app.add_exception_handler(SimulatorHTTPError, _error_handler(state))
    app.add_exception_handler(StarletteHTTPException, _error_handler(state))
    return app


async def verdict_loop(state: SimulatorState, busy: Busy) -> None:
    """Draw the verdicts of new batches a little at a time while no request is being answered, until
    cancelled: a create answers without drawing them, and its batch's results are ready by the time it
    completes (or drawn then, on demand). Requests come first, as they would at Bouncer's many servers."""
    while True:
        if busy.count:
            await asyncio.sleep(_VERDICT_YIELD_SECONDS)
        elif state.compute_verdicts(_VERDICTS_PER_STEP):
            await asyncio.sleep(0)
        else:
            await asyncio.sleep(_VERDICT_IDLE_SECONDS)


def error_response(
    status: int, message: str, *, string_status: bool = False, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Bouncer's error body for `status`."""
    body = {"status": str(status) if string_status else status, "error": HTTPStatus(status).phrase, "message": message}
    return JSONResponse(body, status_code=status, headers=headers)


def _error_handler(state: SimulatorState) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handle(_: Request, exc: Exception) -> Response:
        headers = None
        if isinstance(exc, SimulatorHTTPError):
            status, message, headers = exc.status, exc.message, exc.headers
        else:
            status = getattr(exc, "status_code", 500)
            message = str(getattr(exc, "detail", "")).lower() or "error"
        return error_response(status, message, string_status=state.config.string_status, headers=headers)

    return handle


class Busy:
    """How many requests are being answered right now: verdicts are drawn ahead only when none is."""

    def __init__(self) -> None:
        self.count = 0


def _request_logger(state: SimulatorState, busy: Busy) -> Callable[..., Awaitable[Response]]:
    async def record(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        busy.count += 1
        try:
            response = await call_next(request)
        finally:
            busy.count -= 1
        status = 0 if request.scope.get(_DROP_ANSWER) else response.status_code
        state.record_request(request.method, request.url.path, status, api_key_of(request))
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


def _api_router(state: SimulatorState, sleep: Sleep) -> APIRouter:
    router = APIRouter(prefix="/v1.1")
    router.include_router(_sync_and_domain_router(state))

    @router.post("/email/verify/batch")
    async def create_batch(request: Request) -> Response:
        key = _guard(state, request, "create")
        entries = await _batch_entries(request)
        batch = state.create_batch(key, entries, request.query_params.get("callback"))
        if state.config.create_latency_seconds:
            await sleep(state.config.create_latency_seconds)
        request.scope[_DROP_ANSWER] = state.answer_dropped(batch["batchId"])
        return JSONResponse(batch)

    @router.get("/email/verify/batch/{batch_id}")
    async def batch_status(request: Request, batch_id: str) -> Response:
        key = _guard(state, request, "batch")
        with_stats = request.query_params.get("with-stats", "false").lower() == "true"
        return JSONResponse(state.batch_status(key, batch_id, with_stats=with_stats))

    @router.get("/email/verify/batch/{batch_id}/download")
    async def download(request: Request, batch_id: str) -> Response:
        key = _guard(state, request, "batch")
        kind = request.query_params.get("download", "all")
        if "text/csv" in request.headers.get("accept", ""):
            return Response(results_csv(state.download(key, batch_id, kind)), media_type="text/csv")
        return Response(state.download_json(key, batch_id, kind), media_type="application/json")

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
        result = state.verify(key, email, timeout=timeout, with_toxicity=toxicity)
        await sleep(state.realtime_wait(result, timeout=timeout))
        return JSONResponse(result)

    return router


def _sync_and_domain_router(state: SimulatorState) -> APIRouter:
    router = APIRouter()

    # Declared before the batch routes so "sync" is never taken for a batch id.
    @router.post("/email/verify/batch/sync")
    async def batch_sync(request: Request) -> Response:
        key = _guard(state, request, "sync")
        return JSONResponse(state.verify_sync(key, await _email_strings(request)))

    @router.get("/domain")
    async def domain(request: Request) -> Response:
        key = _guard(state, request, "domain")
        return JSONResponse(state.verify_domain(key, request.query_params.get("domain", "")))

    return router


def _toxicity_router(state: SimulatorState) -> APIRouter:
    router = APIRouter(prefix="/v1/toxicity/list")

    @router.post("")
    async def create(request: Request) -> Response:
        key = _guard(state, request, "toxicity")
        return JSONResponse(state.create_toxicity_list(key, await _email_strings(request)))

    @router.get("/{list_id}")
    async def status(request: Request, list_id: str) -> Response:
        return JSONResponse(state.toxicity_status(_guard(state, request, "toxicity_read"), list_id))

    @router.get("/{list_id}/data")
    async def data(request: Request, list_id: str) -> Response:
        return JSONResponse(state.toxicity_data(_guard(state, request, "toxicity_read"), list_id))

    @router.delete("/{list_id}")
    async def delete(request: Request, list_id: str) -> Response:
        state.delete_toxicity_list(_guard(state, request, "toxicity_read"), list_id)
        return JSONResponse({})

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


async def _email_strings(request: Request) -> list[str]:
    """The JSON array of address strings that batch-sync and toxicity take."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise SimulatorHTTPError(400, "invalid json body") from None
    if not isinstance(body, list) or not all(isinstance(item, str) for item in body):
        raise SimulatorHTTPError(400, "body must be an array of email strings")
    return body


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
