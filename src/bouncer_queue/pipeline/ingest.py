"""Stage 1, ingest: the seed's addEmailsToQueue, streamed.

Stores a request's addresses (Bouncer_Queue) BATCH_SIZE at a time, each chunk with its batch in a transaction of
its own, and enqueues the chunk's create-batch job right after its commit, while the rest of the list is still
being read: Bouncer starts on the first batch within about a second, not after the whole list is stored. The
request is `ingesting` meanwhile (storage/ingest.py), and `active` once the last chunk is in. If enqueueing fails
(Redis down), storing goes on and the jobs are enqueued again at the end; if that fails too, nothing is lost: the
batches are pending in the ledger and `recover` enqueues them.

A request id (or idempotency key) that is already stored is answered with that request, and nothing is stored
again, unless the request is still `ingesting` (a run stopped by a crash, an error or a refusal): then this call
resumes it, storing the rows after its highest stored row number. A failure that leaves a part stored says so in
its message, with the request id to resume or cancel; one in the first chunk stores nothing.

Credits (credits/): each chunk passes the syntax pre-filter before it is stored, and `CreditOptions` ask the
storage step to answer from the result cache and to check the request's running cost with each chunk. A refusal
stops the list there: the chunks already stored fit the credits and go on being verified, and running the same
command again (once credits allow) stores the rest. A list whose every address is answered without Bouncer stores
no batch and enqueues nothing.
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
from bouncer_queue.domain import Priority, RequestState
from bouncer_queue.emails import normalize_email
from bouncer_queue.errors import CreditsRefused, InputError, QueueBackendError, StorageError
from bouncer_queue.pipeline import jobs
from bouncer_queue.storage.ingest import StoredElsewhere
from bouncer_queue.storage.records import CreditCheck, EmailRow, RequestInfo, RequestRecord

if TYPE_CHECKING:
    from bouncer_queue.pipeline.ports import Enqueuer, JobSpec
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


class _Cutter:
    """The one rule both chunkers cut by: a chunk ends at its `size`-th address; skipped rows (no address:
    `EmailRow.skipped`) ride along in the chunk of their neighbours, in input order, without counting towards its
    size (they are stored for the export, never sent); counter[0] counts the addresses cut.

    Items come in lists of at most `missing()`: each holds at most one address, so a chunk can never run past its
    end, and however the input is taken (cut in C by islice, or gathered from an async source) it ends where a
    row-by-row cut would."""

    def __init__(self, size: int, counter: list[int]) -> None:
        self._size = size
        self._counter = counter
        self._rows: list[EmailRow] = []
        self._addresses = 0
        self._read = 0

    def missing(self) -> int:
        """Addresses the chunk in hand still needs: the most items `add` may take next."""
        return self._size - self._addresses

    def add(self, items: list[EmailInput]) -> list[EmailRow] | None:
        """Take the next items (numbered by their position in the input); the chunk, once its last address is in."""
        rows = _as_rows(items, self._read)
        self._read += len(rows)
        if self._rows:
            self._rows.extend(rows)
        else:
            self._rows = rows
        self._addresses += _addresses(rows)
        return self._cut() if self._addresses >= self._size else None

    def end(self) -> list[EmailRow] | None:
        """The last chunk, shorter (None when there is none left)."""
        return self._cut() if self._rows else None

    def _cut(self) -> list[EmailRow]:
        chunk, self._rows = self._rows, []
        self._counter[0] += self._addresses
        self._addresses = 0
        return mark_invalid(chunk)


def chunked(items: Iterable[EmailInput], size: int, counter: list[int]) -> Iterator[list[EmailRow]]:
    """Yield lists of at most `size` addresses, cut by `_Cutter`; counter[0] holds how many addresses went by.
    An input without any address raises InputError once it is read."""
    source = iter(items)
    cutter = _Cutter(size, counter)
    # Taken with islice, the items of a chunk are gathered in C, as many as it may still take at once.
    while more := list(islice(source, cutter.missing())):
        if (chunk := cutter.add(more)) is not None:
            yield chunk
    if (last := cutter.end()) is not None:
        yield last
    _refuse_empty(counter)


async def achunked(items: AsyncIterable[EmailInput], size: int, counter: list[int]) -> AsyncIterator[list[EmailRow]]:
    """`chunked` for an async source (an upload read in a thread, for one): its items are gathered, as many as
    the chunk in hand may still take, and cut by the same `_Cutter`; a chunk is yielded as soon as its last
    address arrives, not when more of the source does."""
    cutter = _Cutter(size, counter)
    gathered: list[EmailInput] = []
    wanted = cutter.missing()
    async for item in items:
        gathered.append(item)
        if len(gathered) >= wanted:
            chunk = cutter.add(gathered)
            gathered, wanted = [], cutter.missing()
            if chunk is not None:
                yield chunk
    if gathered:
        cutter.add(gathered)  # fewer than the chunk still needs: it cannot end here
    if (last := cutter.end()) is not None:
        yield last
    _refuse_empty(counter)


def _refuse_empty(counter: list[int]) -> None:
    # Raised inside the ingest transaction, so an empty list leaves no empty request (nor burns its key).
    if counter[0] == 0:
        raise InputError("the list holds no email addresses")


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
    read_ahead: bool = True,
    between_chunks: Callable[[], Awaitable[None]] | None = None,
) -> AddResult:
    """Store a request's addresses chunk by chunk, enqueueing each chunk's create-batch job once it is stored;
    `on_stored(request_id)` runs when the whole list is stored (a summary printed while it is verified).

    `between_chunks` is awaited after each chunk's job is enqueued, before the next chunk is read: the service
    passes its in-process creates' precedence (pipeline/precedence.py), so where workers share this process
    (`verify`) a create under way reaches Bouncer before the list's next chunk takes the event loop.

    `fingerprint` (the list's content and result-shaping options) lets a later run find the request again.
    With `tracking.idempotency_key` set and a request stored under that key, that request is returned
    (`existing`) and `emails` is not read; a request still `ingesting` (by id or key) is resumed instead."""
    if not user_id or not str(user_id).strip():
        raise InputError("user_id is required")
    if delay_ms < 0:
        raise InputError("delay must be zero or more milliseconds")
    try:
        level = Priority.parse(priority)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    tracking = tracking or Tracking()
    earlier = await _stored_before(repo, request_id, tracking)
    if earlier is not None and earlier.status != RequestState.INGESTING:
        log.info("request already stored", extra={"action": "request_exists", "request_id": earlier.request_id})
        return AddResult(earlier.request_id, earlier.total_emails, earlier.batch_count, (), existing=True)
    spending = credits or CreditOptions()
    request = RequestInfo(
        request_id=earlier.request_id if earlier is not None else request_id or uuid.uuid4().hex,
        user_id=str(user_id),
        # A resumed request keeps what it was stored with: its batches and jobs must agree.
        priority=earlier.priority if earlier is not None else level,
        delay_ms=earlier.delay_ms if earlier is not None else delay_ms,
        fingerprint=fingerprint,
        source=source,
        idempotency_key=tracking.idempotency_key,
        webhook_url=tracking.webhook_url,
        cache_since=spending.cache_since(),
        credit_check=spending.check,
    )
    if earlier is not None:
        log.info("resuming a request", extra={"action": "request_resumed", "request_id": request.request_id})
    counter = [0]
    jobs_left = _JobsLeft(enqueuer, request, between_chunks)
    try:
        chunks = (
            achunked(emails, batch_size, counter)
            if isinstance(emails, AsyncIterable)
            else chunked(emails, batch_size, counter)
        )
        batch_ids = await repo.ingest_request(
            request, chunks, on_batch=jobs_left.enqueue, resume=earlier is not None, ahead=read_ahead
        )
    except (StorageError, StoredElsewhere):
        # Two submissions of one request at once: the unique key let one in (or, resuming one request twice, the
        # other run stores it); this one returns that request.
        if (winner := await _stored_before(repo, request.request_id, tracking)) is not None:
            return AddResult(winner.request_id, winner.total_emails, winner.batch_count, (), existing=True)
        raise
    except (InputError, CreditsRefused) as exc:
        raise await _what_was_stored(repo, request.request_id, exc) from exc
    log.info(
        "request stored: %d emails in %d batches",
        counter[0],
        len(batch_ids),
        extra={"action": "request_stored", "request_id": request.request_id, "emails": counter[0]},
    )
    await jobs_left.flush()
    record = await repo.get_request(request.request_id)
    billable = record.billable if record is not None else 0
    total, batches = (record.total_emails, record.batch_count) if record is not None else (counter[0], len(batch_ids))
    if on_stored is not None:
        await on_stored(request.request_id)
    return AddResult(request.request_id, total, batches, tuple(batch_ids), billable=billable)


async def _stored_before(repo: Repository, request_id: str | None, tracking: Tracking) -> RequestRecord | None:
    """The request stored under this id, or else under the idempotency key; None when there is none."""
    earlier = await repo.get_request(request_id) if request_id is not None else None
    if earlier is None and tracking.idempotency_key:
        earlier = await repo.find_request_by_idempotency_key(tracking.idempotency_key)
    return earlier


class _JobsLeft:
    """Enqueues each stored batch's create job at once; one that Redis refused waits for `flush`, after the list,
    so a Redis outage does not stop the list half stored."""

    def __init__(
        self, enqueuer: Enqueuer, request: RequestInfo, then: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self._enqueuer = enqueuer
        self._request = request
        self._then = then
        self._waiting: list[int] = []

    async def enqueue(self, batch_id: int) -> None:
        await self._enqueue(batch_id)
        if self._then is not None:
            await self._then()

    async def _enqueue(self, batch_id: int) -> None:
        if not self._waiting:
            try:
                await self._enqueuer.enqueue_many([self._job(batch_id)])
                return
            except QueueBackendError as exc:
                log.warning("enqueueing a batch failed: %s; storing goes on", exc, extra={"action": "enqueue_later"})
        self._waiting.append(batch_id)

    async def flush(self) -> None:
        """Enqueue the jobs refused before; raises if Redis still refuses (the reconciler enqueues them later)."""
        if self._waiting:
            await self._enqueuer.enqueue_many([self._job(b) for b in self._waiting])
            self._waiting.clear()

    def _job(self, batch_id: int) -> JobSpec:
        request = self._request
        return jobs.create_batch(batch_id, request.request_id, request.priority, request.delay_ms)


async def _what_was_stored(repo: Repository, request_id: str, error: InputError | CreditsRefused) -> Exception:
    """The error, saying what it left: nothing, or a part that is being verified and can be resumed."""
    stored = await repo.get_request(request_id)
    if stored is None or stored.status != RequestState.INGESTING:
        if isinstance(error, CreditsRefused) and stored is None:
            return CreditsRefused(
                f"{error.message}; nothing was stored (--allow-partial, or allow_partial over HTTP, starts it anyway)"
            )
        return error
    return type(error)(
        f"{error.message}; the {stored.total_emails} addresses before it are stored as request {stored.request_id} "
        "and go on being verified: the same list stored again under that request resumes it (verify FILE does so "
        f"by itself), or `cancel {stored.request_id}` stops it"
    )
