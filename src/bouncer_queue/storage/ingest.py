"""Requests: storing one as pending batches of emails (the first pipeline stage), and asking about it later.

`ingest_request` stores a list chunk by chunk, BATCH_SIZE addresses at a time, each chunk with its batch in ONE
transaction of its own, and hands each batch on (`on_batch`: the create-batch job) right after that commit, while
the rest of the list is still being read: Bouncer starts on the first batch within about a second. The request's
own row (Bouncer_Requests) is committed first, `ingesting`, which nothing finishes (finish_requests) and every
interface shows; it becomes `active` (or `finished`) with its totals once the last chunk is stored. Each chunk's
transaction locks that row first: a `cancel` stops the list at the next chunk, and a second run storing the same
request at once is refused.

Rows go in through storage/bulk.py, the engine's fast path, pre-converted to plain tuples because per-row
SQLAlchemy processing would cost more than the insert. Every input row is stored, but an address is sent once per
request: a row whose key an earlier chunk stored joins its first occurrence (repeats.py). Rows flagged invalid by
the syntax pre-filter are stored in no batch, in state `invalid` (their local answer), and so are rows without an
address (state `skipped`), kept only so an export gives every input row back. Then credits.py answers what the
result cache can for the chunk's batch, adds what it costs to the request's billable count and asks the
request's CreditCheck, in the same transaction (a refusal rolls that chunk back and stops the list).

What an interrupted list leaves is always usable: every committed chunk is whole, with its batch pending (the
reconciler enqueues it if its job was lost). A request still `ingesting` is resumed by storing the same list
again with `resume`: rows up to its highest stored row number are skipped. A new request that has no batch when
it fails (an empty list, or a refusal or read error in its first chunk) is removed whole: nothing was stored.
The read side finds a request (by id, content fingerprint or idempotency key), lists requests, and answers how
far its emails and batches have come.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, repeat
from json.encoder import encode_basestring_ascii as _json_string
from operator import attrgetter, countOf
from typing import Any, cast

from sqlalchemy import RowMapping, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bouncer_queue.domain import BatchState, EmailState, Priority, RequestState
from bouncer_queue.errors import InputError
from bouncer_queue.storage import bulk
from bouncer_queue.storage.batches import email_counts
from bouncer_queue.storage.credits import RESERVE_LOCK, record_billable, settle_billable, spent_and_reserved
from bouncer_queue.storage.read_ahead import in_turn, read_ahead
from bouncer_queue.storage.records import EmailRow, RequestInfo, RequestProgress, RequestRecord
from bouncer_queue.storage.repeats import KeyHashes, join_first_occurrences
from bouncer_queue.storage.tables import BatchModel, QueueModel, RequestModel, ResultModel, utcnow
from bouncer_queue.storage.transactions import Queries, new_id, translated

_FINAL_BATCH_STATES = (BatchState.DOWNLOADED.value, BatchState.DEAD.value)
_QUEUE_COLUMNS = (
    "request_id",
    "user_id",
    "email",
    "name",
    "row_number",
    "extra",
    "priority",
    "status",
    "batch_id",
    "created_at",
    "updated_at",
)

_BATCHED, _INVALID = EmailState.BATCHED.value, EmailState.INVALID.value
_email, _name, _row_number = attrgetter("email"), attrgetter("name"), attrgetter("row_number")
_extra, _invalid, _skipped = attrgetter("extra"), attrgetter("invalid"), attrgetter("skipped")
# Any character JSON escapes as \u00XX serves: no two occurrences of its escape can overlap.
_SEPARATOR = "\x00"
_SEPARATOR_ESCAPED = _json_string(_SEPARATOR)[1:-1]


@dataclass
class IngestRun:
    """One run storing a request's list, chunk by chunk: what it has stored so far (what the request row says,
    since the run keeps it up to date under the row's lock), and the key hashes of every address stored."""

    request: RequestInfo
    keys: KeyHashes = field(default_factory=KeyHashes)
    emails: int = 0
    batches: int = 0
    #: Rows numbered up to this one are stored (a resumed run skips them); None: none stored.
    through_row: int | None = None
    resumed: bool = False

    def unstored(self, rows: Sequence[EmailRow]) -> Sequence[EmailRow]:
        """The rows of a chunk not stored by an earlier run (a resumed request); rows without a number always."""
        last = self.through_row
        if last is None or not self.resumed:
            return rows
        if rows and rows[0].row_number is not None and rows[0].row_number > last:
            return rows  # the common case, past the resume point: no copy
        return [r for r in rows if r.row_number is None or r.row_number > last]

    def stored(self, rows: Sequence[EmailRow], chunk: StoredChunk, keys: Sequence[str]) -> None:
        self.keys.add(keys, chunk.batch_id)
        self.emails += chunk.emails
        self.batches += chunk.batch_id is not None
        # Rows come in input order: the last numbered one is the highest (found from the end: no pass per row).
        last = next((n for n in map(_row_number, reversed(rows)) if n is not None), None)
        if last is not None:
            self.through_row = max(last, self.through_row or 0)


@dataclass(frozen=True)
class StoredChunk:
    """What one chunk's transaction stored: its batch (None when nothing in it needs Bouncer) and its addresses."""

    batch_id: int | None
    emails: int


class IngestStopped(InputError):
    """The request stopped being stored meanwhile: cancelled, or stored by another run at the same time."""


class StoredElsewhere(IngestStopped):
    """Another run stores the same request at the same time (it committed a chunk since this run's last)."""


class RequestQueries(Queries):
    """A request's emails and batches: written chunk by chunk at ingest, then counted and looked up."""

    async def ingest_request(
        self,
        request: RequestInfo,
        chunks: Iterable[Sequence[EmailRow]] | AsyncIterable[Sequence[EmailRow]],
        *,
        on_batch: Callable[[int], Awaitable[None]] | None = None,
        resume: bool = False,
        ahead: bool = True,
    ) -> list[int]:
        """Store the list chunk by chunk, each in its own transaction, and await `on_batch(batch_id)` right after
        each commit; then mark the request active (or finished). With `resume`, the request is stored already
        (`ingesting`): rows up to its highest stored row number are skipped. An error leaves what was committed
        (resumable), except that a new request with no batch yet is removed whole (nothing was sent). `ahead`: read
        the next chunk while this one is stored (read_ahead.py), holding one chunk more in memory."""
        run = await (self.resume_ingest(request) if resume else self.begin_ingest(request))
        batch_ids: list[int] = []
        try:
            async with aclosing(read_ahead(chunks) if ahead else in_turn(chunks)) as reading:
                async for rows in reading:
                    await self._store_next(run, rows, batch_ids, on_batch)
        except Exception:
            if not resume:
                await self.discard_unsent(request.request_id)
            raise
        await self.close_ingest(request.request_id)
        return batch_ids

    async def _store_next(
        self,
        run: IngestRun,
        rows: Sequence[EmailRow],
        batch_ids: list[int],
        on_batch: Callable[[int], Awaitable[None]] | None,
    ) -> None:
        rows = run.unstored(rows)
        if not rows:
            return
        keys = _keys(rows)
        stored = await self.store_chunk(run, rows, keys)
        run.stored(rows, stored, keys)
        if stored.batch_id is not None:
            batch_ids.append(stored.batch_id)
            if on_batch is not None:
                await on_batch(stored.batch_id)

    @translated("start a request")
    async def begin_ingest(self, request: RequestInfo) -> IngestRun:
        """Commit the request's row, `ingesting` (finish_requests leaves it alone), before any of its rows."""
        async with self._db.write() as conn:
            await conn.execute(insert(RequestModel).values(**_new_request_values(request)))
        return IngestRun(request)

    @translated("resume storing a request")
    async def resume_ingest(self, request: RequestInfo) -> IngestRun:
        """The run that goes on storing an `ingesting` request: its totals, its highest stored row number and
        the key hashes of its stored addresses (read as a stream: memory holds only the hashes)."""
        run = IngestRun(request, resumed=True)
        mine = QueueModel.request_id == request.request_id
        async with self._db.read() as conn:
            row = (await conn.execute(select(RequestModel).where(_is(request.request_id)))).mappings().one()
            run.emails, run.batches = int(row["total_emails"]), int(row["batch_count"])
            run.through_row = await conn.scalar(select(func.max(QueueModel.row_number)).where(mine))
            sent = mine & QueueModel.status.not_in((EmailState.SKIPPED.value, EmailState.INVALID.value))
            stored = select(func.lower(QueueModel.email), QueueModel.batch_id).where(sent)
            keys = await conn.stream(stored.execution_options(yield_per=10_000))
            async for part in keys.partitions():
                by_batch: dict[int | None, list[str]] = {}
                for key, batch_id in part:
                    by_batch.setdefault(batch_id, []).append(key)
                for batch_id, batch_keys in by_batch.items():
                    run.keys.add(batch_keys, batch_id)
        return run

    @translated("store a chunk of a request")
    async def store_chunk(self, run: IngestRun, rows: Sequence[EmailRow], keys: Sequence[str]) -> StoredChunk:
        """One transaction: the chunk's rows and its batch (billable: its distinct `keys`, the lower-cased addresses
        of the rows sent, as `_keys` gives them); each address stored before in this request (`keys` whose hash
        came up before, checked exactly) joins its first occurrence's batch or answer; the result cache
        answers what it can; the request's totals and credits are updated and checked. Replayable: the chunk is
        in memory, and `run` changes only after the commit (IngestRun.stored)."""
        request = run.request
        chunk, skipped = _split_skipped(rows)
        repeats = run.keys.seen(keys) if run.emails else {}
        async with self._db.write(RESERVE_LOCK if request.credit_check is not None else None) as conn:
            await _lock_ingesting(conn, request.request_id, run.emails)
            batch_id = await _ingest_chunk(conn, request, chunk, keys) if chunk else None
            if skipped:
                await _store_skipped(conn, request, skipped)
            if batch_id is not None:
                moved = await join_first_occurrences(conn, request.request_id, batch_id, repeats) if repeats else 0
                batch_id = await settle_billable(conn, request, batch_id, moved)
            totals: dict[str, Any] = {
                "total_emails": run.emails + len(chunk),
                "batch_count": run.batches + (batch_id is not None),
            }
            totals["updated_at"] = utcnow()
            await record_billable(conn, request, totals, check=batch_id is not None)
        return StoredChunk(batch_id, len(chunk))

    @translated("finish storing a request")
    async def close_ingest(self, request_id: str) -> None:
        """The whole list is stored: the request becomes `active`, and `finished` when nothing is left open."""
        async with self._db.write() as conn:
            ingesting = _is(request_id) & (RequestModel.status == RequestState.INGESTING.value)
            values = {"status": RequestState.ACTIVE.value, "updated_at": utcnow()}
            await conn.execute(update(RequestModel).where(ingesting).values(**values))
        await self.finish_requests(request_id)

    @translated("remove an unsent request")
    async def discard_unsent(self, request_id: str) -> bool:
        """Remove a request still `ingesting` that has no batch (nothing of it can have been sent), with its
        rows and cached answers: an empty list, or one refused or unreadable in its first chunk, stores nothing.
        False when it has a batch (it stays, resumable)."""
        async with self._db.write() as conn:
            status = await conn.scalar(select(RequestModel.status).where(_is(request_id)).with_for_update())
            has_batch = await conn.scalar(select(BatchModel.id).where(BatchModel.request_id == request_id).limit(1))
            if status != RequestState.INGESTING.value or has_batch is not None:
                return False
            for model in (ResultModel, QueueModel, RequestModel):
                await conn.execute(delete(model).where(model.request_id == request_id))
        return True

    @translated("read a request")
    async def get_request(self, request_id: str) -> RequestRecord | None:
        return await self._first(_is(request_id))

    @translated("find a request by its content")
    async def find_request_by_fingerprint(self, fingerprint: str) -> RequestRecord | None:
        return await self._first(RequestModel.fingerprint == fingerprint)

    @translated("find a request by its idempotency key")
    async def find_request_by_idempotency_key(self, key: str) -> RequestRecord | None:
        return await self._first(RequestModel.idempotency_key == key)

    @translated("list requests")
    async def list_requests(
        self, *, user_id: str | None = None, status: RequestState | None = None, limit: int = 50, offset: int = 0
    ) -> list[RequestRecord]:
        query = select(RequestModel).order_by(RequestModel.created_at.desc(), RequestModel.request_id)
        if user_id is not None:
            query = query.where(RequestModel.user_id == user_id)
        if status is not None:
            query = query.where(RequestModel.status == status.value)
        async with self._db.read() as conn:
            rows = (await conn.execute(query.limit(limit).offset(offset))).mappings().all()
        return [_request_record(row) for row in rows]

    @translated("update a request's state")
    async def set_request_state(self, request_id: str, state: RequestState) -> None:
        done = state in (RequestState.FINISHED, RequestState.CANCELLED)
        values = {"status": state.value, "updated_at": utcnow(), "finished_at": utcnow() if done else None}
        query = update(RequestModel).where(_is(request_id))
        if state == RequestState.ACTIVE:
            # A replayed batch reopens a finished request, never one whose list is still being stored.
            query = query.where(RequestModel.status != RequestState.INGESTING.value)
        async with self._db.write() as conn:
            await conn.execute(query.values(**values))

    @translated("finish requests")
    async def finish_requests(self, request_id: str | None = None) -> int:
        open_batch = select(BatchModel.id).where(
            BatchModel.request_id == RequestModel.request_id, BatchModel.status.not_in(_FINAL_BATCH_STATES)
        )
        query = update(RequestModel).where(RequestModel.status == RequestState.ACTIVE.value, ~open_batch.exists())
        if request_id is not None:
            query = query.where(_is(request_id))
        now = utcnow()
        values = {"status": RequestState.FINISHED.value, "finished_at": now, "updated_at": now}
        async with self._db.write() as conn:
            return int((await conn.execute(query.values(**values))).rowcount or 0)

    async def _first(self, condition: Any) -> RequestRecord | None:
        # The newest match: a fingerprint may belong to several requests (`verify --new` makes another).
        query = select(RequestModel).where(condition).order_by(RequestModel.created_at.desc()).limit(1)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).mappings().first()
        return _request_record(row) if row is not None else None

    @translated("read request progress")
    async def request_progress(self, request_id: str) -> RequestProgress:
        batches = select(BatchModel.status, func.count()).where(BatchModel.request_id == request_id)
        async with self._db.read() as conn:
            emails = await email_counts(conn, QueueModel.request_id == request_id)
            by_batch = {s: int(n) for s, n in (await conn.execute(batches.group_by(BatchModel.status))).all()}
            spent, to_spend = await spent_and_reserved(conn, request_id)
            status = await conn.scalar(select(RequestModel.status).where(_is(request_id)))
        return RequestProgress(
            request_id=request_id,
            emails_total=sum(emails.values()),
            emails_by_state=emails,
            batches_total=sum(by_batch.values()),
            batches_by_state=by_batch,
            credits_spent=spent,
            credits_to_spend=to_spend,
            ingesting=status == RequestState.INGESTING.value,
        )

    @translated("find a request's user")
    async def request_user(self, request_id: str) -> str | None:
        query = select(RequestModel.user_id).where(_is(request_id))
        async with self._db.read() as conn:
            user: str | None = await conn.scalar(query)
        return user


def _is(request_id: str) -> Any:
    return RequestModel.request_id == request_id


def _new_request_values(request: RequestInfo) -> dict[str, Any]:
    now = utcnow()
    return {
        "request_id": request.request_id,
        "user_id": request.user_id,
        "priority": int(request.priority),
        "delay_ms": request.delay_ms,
        "status": RequestState.INGESTING.value,
        "source": request.source[:255] if request.source else None,
        "fingerprint": request.fingerprint,
        "idempotency_key": request.idempotency_key,
        "webhook_url": request.webhook_url,
        "options": dict(request.options) if request.options is not None else None,
        "total_emails": 0,
        "batch_count": 0,
        "created_at": now,
        "updated_at": now,
    }


def _request_record(row: RowMapping) -> RequestRecord:
    return RequestRecord(
        request_id=row["request_id"],
        user_id=row["user_id"],
        priority=Priority(row["priority"]),
        delay_ms=row["delay_ms"],
        status=RequestState(row["status"]),
        total_emails=row["total_emails"],
        batch_count=row["batch_count"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        source=row["source"],
        fingerprint=row["fingerprint"],
        idempotency_key=row["idempotency_key"],
        webhook_url=row["webhook_url"],
        options=row["options"],
        billable=row["billable"],
    )


async def _ingest_chunk(
    conn: AsyncConnection, request: RequestInfo, chunk: Sequence[EmailRow], keys: Sequence[str]
) -> int | None:
    """Store a chunk's rows, the valid ones in a new batch (None when there is none: no batch then)."""
    now = utcnow()
    invalid = any(map(_invalid, chunk))
    sent = [r for r in chunk if not r.invalid] if invalid else chunk
    batch_id = await _new_batch(conn, request, len(sent), len(set(keys)), now) if sent else None
    rows = _queue_rows(request, chunk, batch_id, bulk.time_value(conn, now), invalid)
    await bulk.insert_rows(conn, QueueModel.__tablename__, _QUEUE_COLUMNS, rows)
    return batch_id


def _queue_rows(
    request: RequestInfo, chunk: Sequence[EmailRow], batch_id: int | None, now: Any, invalid: bool
) -> list[bulk.Row]:
    """The chunk's Bouncer_Queue rows in _QUEUE_COLUMNS order, put together by zip: a million rows make no
    Python call each. A row the syntax pre-filter answered is `invalid`, in no batch; the others are placed."""
    if invalid:
        states: Iterable[str] = [_INVALID if r.invalid else _BATCHED for r in chunk]
        batches: Iterable[int | None] = [None if r.invalid else batch_id for r in chunk]
    else:
        states, batches = repeat(_BATCHED), repeat(batch_id)
    return list(
        zip(
            repeat(request.request_id),
            repeat(request.user_id),
            map(_email, chunk),
            map(_name, chunk),
            map(_row_number, chunk),
            _json_texts(list(map(_extra, chunk))),
            repeat(int(request.priority)),
            states,
            batches,
            repeat(now),
            repeat(now),
        )
    )


async def _new_batch(conn: AsyncConnection, request: RequestInfo, quantity: int, billable: int, now: datetime) -> int:
    result = await conn.execute(
        insert(BatchModel).values(
            **_new_batch_values(now),
            request_id=request.request_id,
            user_id=request.user_id,
            priority=int(request.priority),
            delay_ms=request.delay_ms,
            quantity=quantity,
            billable=billable,
        )
    )
    return new_id(result)


def _keys(rows: Sequence[EmailRow]) -> list[str]:
    """The lower-cased addresses of the rows sent (neither skipped nor invalid), in C when every row is sent."""
    if countOf(map(_skipped, rows), None) == len(rows) and not any(map(_invalid, rows)):
        return list(map(str.lower, map(_email, rows)))
    return [r.email.lower() for r in rows if r.skipped is None and not r.invalid]


def _split_skipped(rows: Sequence[EmailRow]) -> tuple[Sequence[EmailRow], list[EmailRow]]:
    """The addresses to batch, and the rows without one (usually none: then the chunk is passed on as it is)."""
    if countOf(map(_skipped, rows), None) == len(rows):
        return rows, []
    return [r for r in rows if r.skipped is None], [r for r in rows if r.skipped is not None]


async def _store_skipped(conn: AsyncConnection, request: RequestInfo, rows: Sequence[EmailRow]) -> None:
    """Rows without an address: stored `skipped`, in no batch, with the reason in `name` (nothing is sent for
    them, so the column is free), so the export gives every input row back. Inserted after their chunk's
    addresses: the export orders by row number, not by insertion."""
    now = bulk.time_value(conn, utcnow())
    head = (request.request_id, request.user_id)
    skipped = EmailState.SKIPPED.value
    values = [
        (*head, "", r.skipped, r.row_number, _json(r.extra), int(request.priority), skipped, None, now, now)
        for r in rows
    ]
    await bulk.insert_rows(conn, QueueModel.__tablename__, _QUEUE_COLUMNS, values)


async def _lock_ingesting(conn: AsyncConnection, request_id: str, emails: int) -> None:
    """Lock the request's row for the chunk's transaction and check it is still being stored by this run: a
    `cancel` (which changes this row first) stops the list here, and so does another run storing it meanwhile."""
    query = select(RequestModel.status, RequestModel.total_emails).where(_is(request_id)).with_for_update()
    row = (await conn.execute(query)).first()
    if row is not None and row.status in (RequestState.ACTIVE.value, RequestState.FINISHED.value):
        # Only a run storing the list makes it active: another run (resuming it at the same time) finished it.
        raise StoredElsewhere(f"request {request_id} was stored by another run; this one stopped")
    if row is None or row.status != RequestState.INGESTING.value:
        state = row.status if row is not None else "removed"
        raise IngestStopped(f"request {request_id} is {state}: the rest of its list was not stored")
    if row.total_emails != emails:
        raise StoredElsewhere(f"request {request_id} is being stored by another run; this one stopped")


def _new_batch_values(now: datetime) -> dict[str, Any]:
    return {
        "status": BatchState.PENDING.value,
        "duplicates": 0,
        "processed": 0,
        "attempts": 0,
        "retries": 0,
        "created_at": now,
        "updated_at": now,
    }


def _json_texts(values: list[Mapping[str, Any] | None]) -> list[str | None]:
    """`_json` of each value, byte for byte. The list readers' `extra` of a chunk are dicts of text under the same
    headers: then every cell of the chunk is escaped by one C call and each object is put back together from a
    template, with no Python call per row (half the cost). Anything else takes `_json` value by value."""
    if countOf(map(type, values), dict) != len(values):
        return list(map(_json, values))
    dicts = cast("list[dict[str, Any]]", values)
    headers = set(map(tuple, dicts))
    cells = list(chain.from_iterable(map(dict.values, dicts)))
    if len(headers) != 1 or not cells or countOf(map(type, cells), str) != len(cells):
        return list(map(_json, values))
    [names] = headers
    if countOf(map(type, names), str) != len(names):
        return list(map(_json, values))
    # One escaped string, cut at the separator's escape. A separator in a cell (or the escape's six characters
    # spelled out in one) makes more pieces than cells, and the chunk is then encoded value by value.
    pieces = _json_string(_SEPARATOR.join(cells))[1:-1].split(_SEPARATOR_ESCAPED)
    if len(pieces) != len(cells):
        return list(map(_json, values))
    template = "{" + ", ".join(_json_string(name).replace("%", "%%") + ': "%s"' for name in names) + "}"
    return list(map(template.__mod__, zip(*[iter(pieces)] * len(names), strict=True)))


def _json(value: Mapping[str, Any] | None) -> str | None:
    """json.dumps(value), byte for byte; a flat text-to-text mapping (every list row's `extra`) is encoded
    directly, twice as fast as json.dumps, which costs seconds over a million rows."""
    if value is None:
        return None
    try:
        return "{" + ", ".join([f"{_json_string(k)}: {_json_string(v)}" for k, v in value.items()]) + "}"
    except TypeError:  # a key or value that is not text
        return json.dumps(dict(value))
