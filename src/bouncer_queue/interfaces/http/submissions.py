"""Handing in a list over HTTP: a JSON body or a multipart upload, checked, spooled and added to the queues.

An upload is copied to a temporary file chunk by chunk (never whole in memory), counted against
API_MAX_UPLOAD_BYTES, and read by the same list readers as the CLI (lists/readers.py), in a thread a few
thousand rows at a time, streaming into the ingest transaction while the server keeps answering. The
dashboard's upload form comes through here too.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from fastapi import HTTPException, Request, status
from starlette.datastructures import FormData, UploadFile

from bouncer_queue.errors import InputError
from bouncer_queue.interfaces.http.schemas import AcceptedOut, RequestIn
from bouncer_queue.lists import LIST_FORMATS, read_list
from bouncer_queue.pipeline.ingest import EmailInput, Tracking
from bouncer_queue.pipeline.webhooks import check_target
from bouncer_queue.service import QueueManager
from bouncer_queue.storage.records import EmailRow

#: Extensions an upload may have: the readers' formats, and JSON Lines' other name.
UPLOAD_EXTENSIONS = (*LIST_FORMATS, "jsonl")
CHUNK_BYTES = 1024 * 1024
#: How a form field may say yes or no (an HTML checkbox sends "on").
_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


@dataclass
class Submission:
    """The options of one submission, whatever its body."""

    user_id: str = "api"
    priority: str = "NORMAL"
    delay: int = 0
    idempotency_key: str | None = None
    webhook_url: str | None = None
    source: str = "api"
    #: Refuse the list when it needs more credits than this, or than Bouncer's balance less what others hold.
    max_credits: int | None = None
    #: Start it anyway: its batches go out while credits last (the credits gate holds the rest).
    allow_partial: bool = False


def check_length(request: Request, limit: int) -> None:
    """413 before reading a body that says it is larger than the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)


def too_large(limit: int) -> HTTPException:
    return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"the upload is larger than {limit} bytes")


async def submit(
    manager: QueueManager, emails: Iterable[EmailInput] | AsyncIterable[EmailInput], sub: Submission
) -> AcceptedOut:
    """Add the list (or find the request stored under the idempotency key) and say where to follow it."""
    if sub.webhook_url:
        await check_webhook(manager, sub.webhook_url)
    tracking = Tracking(idempotency_key=sub.idempotency_key, webhook_url=sub.webhook_url)
    credits, _ = await manager.credit_options(max_credits=sub.max_credits, allow_partial=sub.allow_partial)
    result = await manager.add_emails_to_queue(
        emails,
        sub.user_id,
        priority=sub.priority,
        delay=sub.delay,
        source=sub.source,
        tracking=tracking,
        credits=credits,
    )
    return AcceptedOut(
        request_id=result.request_id,
        created=not result.existing,
        total_emails=result.total_emails,
        batch_count=result.batch_count,
        status_url=f"/api/v1/requests/{result.request_id}",
        results_url=f"/api/v1/requests/{result.request_id}/results",
    )


async def check_webhook(manager: QueueManager, url: str) -> None:
    settings = manager.settings
    if settings.webhook_secret is None:
        raise InputError("this server sends no webhooks: WEBHOOK_SECRET is not configured")
    await asyncio.to_thread(check_target, url, allow_private=settings.webhook_allow_private)


def from_json(body: RequestIn, idempotency_header: str | None) -> tuple[list[EmailInput], Submission]:
    emails: list[EmailInput] = [e if isinstance(e, str) else e.model_dump(exclude_none=True) for e in body.emails]
    sub = Submission(
        user_id=body.user_id,
        priority=body.priority,
        delay=body.delay,
        idempotency_key=body.idempotency_key or idempotency_header,
        webhook_url=body.webhook_url,
        max_credits=body.max_credits,
        allow_partial=body.allow_partial,
    )
    return emails, sub


def from_form(form: FormData, idempotency_header: str | None) -> Submission:
    """The options sent beside an uploaded file."""

    def text(name: str) -> str | None:
        value = form.get(name)
        return value.strip() or None if isinstance(value, str) else None

    delay = text("delay") or "0"
    if not delay.isdigit():
        raise InputError("delay must be zero or more milliseconds")
    max_credits = text("max_credits")
    if max_credits is not None and not max_credits.isdigit():
        raise InputError("max_credits must be a whole number of credits")
    allow_partial = (text("allow_partial") or "false").lower()
    if allow_partial not in _BOOLEANS:
        raise InputError("allow_partial must be true or false")
    return Submission(
        user_id=text("user_id") or "api",
        priority=text("priority") or "NORMAL",
        delay=int(delay),
        idempotency_key=text("idempotency_key") or idempotency_header,
        webhook_url=text("webhook_url"),
        max_credits=int(max_credits) if max_credits is not None else None,
        allow_partial=_BOOLEANS[allow_partial],
    )


async def submit_upload(manager: QueueManager, form: FormData, sub: Submission) -> AcceptedOut:
    """The uploaded `file` field, spooled to disk and read by the list readers."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InputError("the multipart body needs a `file` part holding the list")
    column = form.get("column")
    async with spooled(upload, manager.settings.api_max_upload_bytes) as path:
        column_name = column if isinstance(column, str) and column else None
        reader = read_list(path, column=column_name, keep_skipped=True)  # skipped rows come back in exports
        sub.source = (upload.filename or "upload")[:255]
        try:
            accepted = await submit(manager, off_the_loop(reader), sub)
        except InputError as exc:
            raise InputError(str(exc).replace(str(path), upload.filename or "the upload")) from None
    accepted.skipped_rows = reader.skipped_total
    return accepted


async def off_the_loop(rows: Iterable[EmailRow], step: int = 2_000) -> AsyncIterator[EmailRow]:
    """The rows of a list, read and parsed `step` at a time in a thread, so a long upload does not stop the
    server from answering other requests meanwhile."""
    iterator = iter(rows)
    while block := await asyncio.to_thread(list, islice(iterator, step)):
        for row in block:
            yield row


@asynccontextmanager
async def spooled(upload: UploadFile, limit: int) -> AsyncIterator[Path]:
    """The upload in a temporary file named with its extension; 415 for a format we cannot read, 413 past `limit`."""
    extension = Path(upload.filename or "").suffix.lower().lstrip(".")
    if extension not in UPLOAD_EXTENSIONS:
        supported = ", ".join(f".{e}" for e in UPLOAD_EXTENSIONS)
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"cannot read a .{extension or '?'} list; supported: {supported}"
        )
    with tempfile.TemporaryDirectory(prefix="bouncer-upload-") as folder:
        path = Path(folder) / f"list.{extension}"
        await _copy(upload, path, limit)
        yield path


async def _copy(upload: UploadFile, path: Path, limit: int) -> None:
    size = 0
    with path.open("wb") as out:
        while chunk := await upload.read(CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            out.write(chunk)
