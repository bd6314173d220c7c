"""Requests: storing one as pending batches of emails (the first pipeline stage), and asking about it later.

`ingest_request` writes a whole request in ONE transaction through storage/bulk.py, the engine's fast path, with
rows pre-converted to plain tuples because per-row SQLAlchemy processing would cost more than the insert. The
request's own row (Bouncer_Requests) is written in the same transaction, so a request exists whole or not at all.
Every input row is stored, but an address is sent once per request: before the commit, one set-based step
moves each repeated address (same lower-cased key as the results) into the batch of its first occurrence, and
batches left empty are deleted, so no two batches of a request share an address. `batch_emails` (batches.py)
then sends each address of a batch once. The step runs in the database, so memory stays flat at any list size;
it costs a sort of the request's rows, so it only runs when two rows' keys hash alike (`KeyHashes`, 8 bytes a
row), which a list without repeats never shows. Rows flagged invalid by the syntax pre-filter are stored in no
batch, in state `invalid` (their local answer), and so are rows without an address (state `skipped`), which
are kept only so an export gives every input row back; after the repeats are merged, credits.py answers what
the result cache can and records what the request costs (`settle_billable`), in the same transaction.
The read side finds a request (by id, content fingerprint or idempotency key), lists requests, and answers how
far its emails and batches have come.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from itertools import chain, repeat
from json.encoder import encode_basestring_ascii as _json_string
from operator import attrgetter, countOf
from typing import Any, cast

from sqlalchemy import RowMapping, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bouncer_queue.domain import BatchState, EmailState, Priority, RequestState
from bouncer_queue.storage import bulk
from bouncer_queue.storage.batches import email_counts
from bouncer_queue.storage.boundary import SourceError
from bouncer_queue.storage.credits import recount_batches, settle_billable, spent_and_reserved
from bouncer_queue.storage.records import EmailRow, RequestInfo, RequestProgress, RequestRecord
from bouncer_queue.storage.tables import BatchModel, QueueModel, RequestModel, utcnow
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


class KeyHashes:
    """The hashes of every address key seen, in 256 compact arrays (8 bytes an address). Distinct hashes prove
    distinct keys; equal ones only say the exact, set-based check in the database is worth its sort."""

    def __init__(self) -> None:
        self._buckets = [array("q") for _ in range(256)]

    def add(self, emails: Iterable[str]) -> None:
        buckets = self._buckets
        # str.lower folds at least what the databases' lower() does, so equal SQL keys hash alike.
        for key in map(hash, map(str.lower, emails)):
            buckets[key & 255].append(key)

    def may_repeat(self) -> bool:
        return any(len(set(bucket)) != len(bucket) for bucket in self._buckets)


class RequestQueries(Queries):
    """A request's emails and batches: written once at ingest, then counted and looked up."""

    @translated("ingest a request", replayable=False)
    async def ingest_request(
        self,
        request: RequestInfo,
        chunks: Iterable[Sequence[EmailRow]] | AsyncIterable[Sequence[EmailRow]],
    ) -> list[int]:
        batch_ids: list[int] = []
        emails = 0
        keys = KeyHashes()
        async with self._db.write() as conn:
            await conn.execute(insert(RequestModel).values(**_new_request_values(request)))
            async for rows in _guarded_chunks(chunks):
                chunk, skipped = _split_skipped(rows)
                if chunk:
                    batch_id = await _ingest_chunk(conn, request, chunk)
                    batch_ids += [batch_id] if batch_id is not None else []
                    keys.add(row.email for row in chunk if not row.invalid)
                    emails += len(chunk)
                if skipped:
                    await _store_skipped(conn, request, skipped)
            if len(batch_ids) > 1 and keys.may_repeat() and await _merge_repeated_addresses(conn, request.request_id):
                batch_ids = await recount_batches(conn, request.request_id)
            batch_ids = await settle_billable(conn, request, batch_ids)
            totals = {"total_emails": emails, "batch_count": len(batch_ids), "updated_at": utcnow()}
            await conn.execute(update(RequestModel).where(_is(request.request_id)).values(**totals))
        return batch_ids

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
        async with self._db.write() as conn:
            await conn.execute(update(RequestModel).where(_is(request_id)).values(**values))

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
        return RequestProgress(
            request_id=request_id,
            emails_total=sum(emails.values()),
            emails_by_state=emails,
            batches_total=sum(by_batch.values()),
            batches_by_state=by_batch,
            credits_spent=spent,
            credits_to_spend=to_spend,
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
        "status": RequestState.ACTIVE.value,
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


async def _ingest_chunk(conn: AsyncConnection, request: RequestInfo, chunk: Sequence[EmailRow]) -> int | None:
    """Store a chunk's rows, the valid ones in a new batch (None when there is none: no batch then)."""
    now = utcnow()
    invalid = any(map(_invalid, chunk))
    sent = [r for r in chunk if not r.invalid] if invalid else chunk
    batch_id = await _new_batch(conn, request, sent, now) if sent else None
    rows = _queue_rows(request, chunk, batch_id, now, invalid)
    await bulk.insert_rows(conn, QueueModel.__tablename__, _QUEUE_COLUMNS, rows)
    return batch_id


def _queue_rows(
    request: RequestInfo, chunk: Sequence[EmailRow], batch_id: int | None, now: datetime, invalid: bool
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


async def _new_batch(conn: AsyncConnection, request: RequestInfo, sent: Sequence[EmailRow], now: datetime) -> int:
    result = await conn.execute(
        insert(BatchModel).values(
            **_new_batch_values(now),
            request_id=request.request_id,
            user_id=request.user_id,
            priority=int(request.priority),
            delay_ms=request.delay_ms,
            quantity=len(sent),
            billable=len(set(map(str.lower, map(_email, sent)))),
        )
    )
    return new_id(result)


async def _merge_repeated_addresses(conn: AsyncConnection, request_id: str) -> int:
    """Move every row whose address (lower-cased) came earlier in the request into that first row's batch;
    return how many rows moved. One sort in the database, whatever the list's size."""
    if conn.dialect.name == "postgresql":
        # The window sorts every row of the request; in memory that is several times faster than on disk.
        await conn.execute(text("SET LOCAL work_mem = '64MB'"))
    first_batch = func.first_value(QueueModel.batch_id).over(
        partition_by=func.lower(QueueModel.email), order_by=QueueModel.id
    )
    ranked = select(QueueModel.id, QueueModel.batch_id, first_batch.label("first_batch"))
    ranked_rows = ranked.where(QueueModel.request_id == request_id).subquery()
    movers = (
        select(ranked_rows.c.id, ranked_rows.c.first_batch)
        .where(ranked_rows.c.batch_id != ranked_rows.c.first_batch)
        .subquery()
    )
    moved = await conn.execute(
        update(QueueModel)
        .where(QueueModel.id == movers.c.id)
        .values(batch_id=movers.c.first_batch)
        .execution_options(synchronize_session=False)
    )
    return int(moved.rowcount or 0)


def _split_skipped(rows: Sequence[EmailRow]) -> tuple[Sequence[EmailRow], list[EmailRow]]:
    """The addresses to batch, and the rows without one (usually none: then the chunk is passed on as it is)."""
    if countOf(map(_skipped, rows), None) == len(rows):
        return rows, []
    return [r for r in rows if r.skipped is None], [r for r in rows if r.skipped is not None]


async def _store_skipped(conn: AsyncConnection, request: RequestInfo, rows: Sequence[EmailRow]) -> None:
    """Rows without an address: stored `skipped`, in no batch, with the reason in `name` (nothing is sent for
    them, so the column is free), so the export gives every input row back. Inserted after their chunk's
    addresses: the export orders by row number, not by insertion."""
    now = utcnow()
    head = (request.request_id, request.user_id)
    skipped = EmailState.SKIPPED.value
    values = [
        (*head, "", r.skipped, r.row_number, _json(r.extra), int(request.priority), skipped, None, now, now)
        for r in rows
    ]
    await bulk.insert_rows(conn, QueueModel.__tablename__, _QUEUE_COLUMNS, values)


async def _guarded_chunks(
    chunks: Iterable[Sequence[EmailRow]] | AsyncIterable[Sequence[EmailRow]],
) -> AsyncIterator[Sequence[EmailRow]]:
    # Errors from the caller's iterable are wrapped so the translator re-raises them unchanged.
    try:
        if isinstance(chunks, AsyncIterable):
            async for chunk in chunks:
                yield chunk
        else:
            for chunk in chunks:
                yield chunk
    except Exception as exc:
        raise SourceError(exc) from exc


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
