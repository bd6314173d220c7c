"""Stage 1, ingest: the seed's addEmailsToQueue.

Stores every address of a request (Bouncer_Queue) and its batches (Bouncer_Batches) in one transaction, and
only then enqueues one create-batch job per batch. Input (an iterable, or an async one) is consumed as a stream,
BATCH_SIZE rows at a time, so a list of a million addresses never sits whole in memory. If enqueueing fails
after the commit (Redis down), nothing is lost: the batches are pending in the ledger and `recover` enqueues
them again. A request id that is already stored is answered with that request, and nothing is stored again.

Credits (credits/): each chunk passes the syntax pre-filter before it is stored, and `CreditOptions` ask the
storage step to answer from the result cache and to check the request's credits before the commit. A list whose
every address is answered without Bouncer stores no batch and enqueues nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import islice, repeat
from operator import attrgetter, countOf
from typing import TYPE_CHECKING

from bouncer_queue.credits.cache import cache_since
from bouncer_queue.credits.prefilter import mark_invalid
from bouncer_queue.domain import Priority
from bouncer_queue.emails import normalize_email
from bouncer_queue.errors import InputError, StorageError
from bouncer_queue.pipeline import jobs
from bouncer_queue.storage.records import CreditCheck, EmailRow, RequestInfo

if TYPE_CHECKING:
    from bouncer_queue.pipeline.ports import Enqueuer
    from bouncer_queue.storage.repository import Repository

log = logging.getLogger(__name__)
_skipped = attrgetter("skipped")

EmailInput = EmailRow | Mapping[str, object] | str


@dataclass(frozen=True)
class AddResult:
    """What add_emails_to_queue did (the seed's totalEmails / batchCount)."""

    request_id: str
    total_emails: int
    batch_count: int
    batch_ids: tuple[int, ...]
    #: True when the request id (or the idempotency key) was already stored: this call stored and enqueued nothing.
    existing: bool = False
    #: Credits the request costs: unique addresses, valid by syntax, not answered from the cache.
    billable: int = 0


@dataclass(frozen=True)
class CreditOptions:
    """How a request spends credits: answers reused from the last `cache_days` days (0: none), and the check that
    refuses it before the commit (credits/reservations.py)."""

    cache_days: float = 30
    check: CreditCheck | None = None

    def cache_since(self) -> datetime | None:
        return cache_since(self.cache_days)


@dataclass(frozen=True)
class Tracking:
    """What finds a request again or reports on it: a caller's idempotency key, a webhook URL."""

    idempotency_key: str | None = None
    webhook_url: str | None = None


def _to_row(item: EmailInput, index: int) -> EmailRow:
    if isinstance(item, EmailRow):
        return item
    if isinstance(item, str):
        return EmailRow(email=normalize_email(item), row_number=index, extra={"email": item})
    email = item.get("email")
    if not isinstance(email, str) or not email.strip():
        raise InputError(f"item {index} has no email: {dict(item)!r:.200}")
    name = item.get("name")
    # The item as given, every key (the address too), kept for exports as the list readers keep a CSV's row.
    return EmailRow(
        email=normalize_email(email),
        name=str(name) if name is not None else None,
        row_number=index,
        extra={str(k): v for k, v in item.items()},
    )


async def achunked(items: AsyncIterable[EmailInput], size: int, counter: list[int]) -> AsyncIterator[list[EmailRow]]:
    """`chunked` for an async source (an upload read in a thread, for one)."""
    chunk: list[EmailRow] = []
    index = addresses = 0
    async for item in items:
        index += 1
        row = item if isinstance(item, EmailRow) else _to_row(item, index)
        chunk.append(row)
        addresses += row.skipped is None  # skipped rows ride along, as in `chunked`
        if addresses >= size:
            counter[0] += addresses
            yield mark_invalid(chunk)
            chunk, addresses = [], 0
    if chunk:
        counter[0] += addresses
        yield mark_invalid(chunk)
    _refuse_empty(counter)


def _refuse_empty(counter: list[int]) -> None:
    # Raised inside the ingest transaction, so an empty list leaves no empty request (nor burns its key).
    if counter[0] == 0:
        raise InputError("the list holds no email addresses")


def chunked(items: Iterable[EmailInput], size: int, counter: list[int]) -> Iterator[list[EmailRow]]:
    """Yield lists of at most `size` addresses; counter[0] holds how many addresses went by.

    Skipped rows (no address: `EmailRow.skipped`) ride along in the chunk of their neighbours, in input order,
    without counting towards its size: they are stored for the export, never sent.
    """
    source = iter(items)
    read = 0
    # Taken with islice, a chunk is cut in C; it is topped up by the rows still missing until it holds `size`
    # addresses (or the input ends), so it ends where the row-by-row cut did: at its `size`-th address.
    while chunk := _as_rows(list(islice(source, size)), read):
        read += len(chunk)
        addresses = _addresses(chunk)
        while addresses < size and (more := _as_rows(list(islice(source, size - addresses)), read)):
            read += len(more)
            chunk += more
            addresses += _addresses(more)
        counter[0] += addresses
        yield mark_invalid(chunk)
    _refuse_empty(counter)


def _as_rows(items: list[EmailInput], before: int) -> list[EmailRow]:
    """`items` as EmailRows, numbered from `before` + 1; EmailRow is what the list readers give, kept as it is."""
    if all(map(isinstance, items, repeat(EmailRow))):
        return items  # type: ignore[return-value]  # every item is one, as just checked
    return [item if isinstance(item, EmailRow) else _to_row(item, n) for n, item in enumerate(items, before + 1)]


def _addresses(rows: list[EmailRow]) -> int:
    """How many of `rows` carry an address (not `skipped`), counted in C."""
    return countOf(map(_skipped, rows), None)


async def add_emails_to_queue(
    repo: Repository,
    enqueuer: Enqueuer,
    emails: Iterable[EmailInput] | AsyncIterable[EmailInput],
    *,
    user_id: str,
    request_id: str | None = None,
    priority: str | Priority = Priority.NORMAL,
    delay_ms: int = 0,
    batch_size: int = 10_000,
    fingerprint: str | None = None,
    source: str | None = None,
    tracking: Tracking | None = None,
    credits: CreditOptions | None = None,
    on_stored: Callable[[str], Awaitable[None]] | None = None,
) -> AddResult:
    """Store a request's addresses, split them into batches, and enqueue one create-batch job per batch;
    `on_stored(request_id)` runs between the two (a summary printed before anything can be sent).

    `fingerprint` (the list's content and result-shaping options) lets a later run find the request again.
    With `tracking.idempotency_key` set and a request stored under that key, that request is returned
    (`existing`) and `emails` is not read."""
    if not user_id or not str(user_id).strip():
        raise InputError("user_id is required")
    if delay_ms < 0:
        raise InputError("delay must be zero or more milliseconds")
    try:
        level = Priority.parse(priority)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if request_id is not None and (stored := await repo.get_request(request_id)) is not None:
        log.info("request already stored", extra={"action": "request_exists", "request_id": request_id})
        return AddResult(request_id, stored.total_emails, stored.batch_count, (), existing=True)
    tracking = tracking or Tracking()
    if tracking.idempotency_key and (earlier := await repo.find_request_by_idempotency_key(tracking.idempotency_key)):
        return AddResult(earlier.request_id, earlier.total_emails, earlier.batch_count, (), existing=True)
    spending = credits or CreditOptions()
    request = RequestInfo(
        request_id=request_id or uuid.uuid4().hex,
        user_id=str(user_id),
        priority=level,
        delay_ms=delay_ms,
        fingerprint=fingerprint,
        source=source,
        idempotency_key=tracking.idempotency_key,
        webhook_url=tracking.webhook_url,
        cache_since=spending.cache_since(),
        credit_check=spending.check,
    )
    counter = [0]
    try:
        chunks = (
            achunked(emails, batch_size, counter)
            if isinstance(emails, AsyncIterable)
            else chunked(emails, batch_size, counter)
        )
        batch_ids = await repo.ingest_request(request, chunks)
    except StorageError:
        # Two first requests with one key at once: the unique key let one in; the other returns it.
        if tracking.idempotency_key and (
            winner := await repo.find_request_by_idempotency_key(tracking.idempotency_key)
        ):
            return AddResult(winner.request_id, winner.total_emails, winner.batch_count, (), existing=True)
        raise
    log.info(
        "request stored: %d emails in %d batches",
        counter[0],
        len(batch_ids),
        extra={"action": "request_stored", "request_id": request.request_id, "emails": counter[0]},
    )
    record = await repo.get_request(request.request_id)
    billable = record.billable if record is not None else 0
    if on_stored is not None:
        await on_stored(request.request_id)
    if not batch_ids:  # every address was answered without Bouncer: the request is already done
        await repo.finish_requests(request.request_id)
    await enqueuer.enqueue_many([jobs.create_batch(b, request.request_id, level, delay_ms) for b in batch_ids])
    return AddResult(request.request_id, counter[0], len(batch_ids), tuple(batch_ids), billable=billable)
