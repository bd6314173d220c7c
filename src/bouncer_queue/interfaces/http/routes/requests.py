"""/api/v1/requests: hand in a list, list requests, follow one, download its results, cancel it.

Cancelling (DELETE, QueueManager.cancel_request) takes the `submit` scope: whoever may start requests may stop
them; an admin token may too (scopes nest).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from bouncer_queue.domain import RequestState
from bouncer_queue.errors import InputError
from bouncer_queue.interfaces.http import submissions
from bouncer_queue.interfaces.http.deps import ManagerDep, ReadToken, SubmitToken
from bouncer_queue.interfaces.http.schemas import (
    AcceptedOut,
    BatchOut,
    CancelOut,
    RequestDetailOut,
    RequestIn,
    RequestPageOut,
    to_batch,
    to_cancel,
    to_detail,
    to_request,
)
from bouncer_queue.lists.export import iter_export
from bouncer_queue.service import QueueManager

router = APIRouter(prefix="/requests", tags=["requests"])

_UPLOAD_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "CSV, TSV, TXT, JSON, NDJSON or XLSX list"},
        "user_id": {"type": "string"},
        "priority": {"type": "string", "enum": ["CRITICAL", "HIGH", "NORMAL", "LOW"]},
        "delay": {"type": "integer", "description": "milliseconds"},
        "idempotency_key": {"type": "string"},
        "webhook_url": {"type": "string"},
        "column": {"type": "string", "description": "the column holding the address"},
    },
}
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/RequestIn"}},
            "multipart/form-data": {"schema": _UPLOAD_SCHEMA},
        },
    }
}
_MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json", "ndjson": "application/x-ndjson"}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra=_BODY_DOC,
    responses={200: {"model": AcceptedOut, "description": "the idempotency key's earlier request"}},
)
async def create_request(request: Request, response: Response, manager: ManagerDep, _: SubmitToken) -> AcceptedOut:
    """Hand in a list: JSON (`{"emails": [...], "user_id": ...}`) or a multipart upload (`file`)."""
    limit = manager.settings.api_max_upload_bytes
    submissions.check_length(request, limit)
    header_key = request.headers.get("idempotency-key")
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=20, max_part_size=64 * 1024) as form:
            accepted = await submissions.submit_upload(manager, form, submissions.from_form(form, header_key))
    elif content_type.startswith("application/json"):
        emails, sub = submissions.from_json(await _json_body(request, limit), header_key)
        accepted = await submissions.submit(manager, emails, sub)
    else:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send application/json or multipart/form-data with a `file` part"
        )
    response.headers["Location"] = accepted.status_url
    if not accepted.created:
        response.status_code = status.HTTP_200_OK
    return accepted


async def _json_body(request: Request, limit: int) -> RequestIn:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise submissions.too_large(limit)
    try:
        return RequestIn.model_validate_json(body)
    except ValidationError as exc:
        raise InputError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None


@router.get("")
async def list_requests(
    manager: ManagerDep,
    _: ReadToken,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    user_id: str | None = None,
    status: RequestState | None = None,
) -> RequestPageOut:
    """Requests, newest first; `limit`/`offset` page through them, `user_id` and `status` filter."""
    records = await manager.list_requests(user_id=user_id, status=status, limit=limit + 1, offset=offset)
    more = len(records) > limit
    return RequestPageOut(
        items=[to_request(r) for r in records[:limit]],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if more else None,
    )


@router.get("/{request_id}")
async def get_request(request_id: str, manager: ManagerDep, _: ReadToken) -> RequestDetailOut:
    """Progress: counts by address and batch state, credits spent, start and finish, and an ETA."""
    found = await manager.request_status(request_id)
    if found is None:
        raise unknown(request_id)
    return to_detail(found)


@router.delete("/{request_id}")
async def cancel_request(request_id: str, manager: ManagerDep, _: SubmitToken) -> CancelOut:
    """Cancel a request: batches not yet sent never are; batches at Bouncer are finished early, which refunds the
    addresses not yet verified (their verified results are still stored). Repeating it is harmless."""
    outcome = await manager.cancel_request(request_id)
    if not outcome.found:
        raise unknown(request_id)
    return to_cancel(outcome)


@router.get("/{request_id}/batches")
async def get_batches(request_id: str, manager: ManagerDep, _: ReadToken) -> list[BatchOut]:
    await known(manager, request_id)
    return [to_batch(b) for b in await manager.request_batches(request_id)]


@router.get("/{request_id}/results", response_class=StreamingResponse, responses={200: {"content": _MEDIA}})
async def get_results(
    request_id: str,
    manager: ManagerDep,
    _: ReadToken,
    format: Literal["csv", "json", "ndjson"] = "csv",
    status: Annotated[str | None, Query(description="Only these result statuses, e.g. deliverable,risky")] = None,
) -> StreamingResponse:
    """The request's rows (your columns kept) with their results, streamed; CSV cells are formula-guarded."""
    await known(manager, request_id)
    statuses = {s.strip().lower() for s in status.split(",") if s.strip()} if status else None
    pieces = iter_export(manager.export(request_id, statuses), format)
    filename = f"{request_id}.{format}"
    return StreamingResponse(
        _encoded(pieces),
        media_type=_MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _encoded(pieces: AsyncIterator[str]) -> AsyncIterator[bytes]:
    async for piece in pieces:
        yield piece.encode("utf-8")


async def known(manager: QueueManager, request_id: str) -> None:
    if await manager.get_request(request_id) is None:
        raise unknown(request_id)


def unknown(request_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no request {request_id[:80]!r}")
