"""Results: storing a downloaded batch's verifications (the last pipeline stage) and exporting a request with them.

`store_results` upserts through storage/bulk.py and settles the batch and its emails in the same transaction, so
a crash never leaves results without their states. `iter_export` streams a request's rows joined with their
results from a server-side cursor, every input row in input order: a row stored `skipped` (no address) comes
back with status `skipped` and its reason. Result emails are stored lower-cased and matched case-insensitively. A
row in state `invalid` (the syntax pre-filter's) has no result row and exports its local answer. The export reads
each result's flags from their columns and Bouncer's object as text (`ExportRow.raw_json`), decoded only if asked
for.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime
from functools import partial
from itertools import repeat
from operator import add, attrgetter, countOf, itemgetter
from typing import Any, cast

from sqlalchemy import Row, Text, case, func, select, text, update

from bouncer_queue.credits.prefilter import LOCAL_REASON, LOCAL_STATUS
from bouncer_queue.domain import BatchState, EmailState
from bouncer_queue.storage import bulk
from bouncer_queue.storage.batches import batch_update, email_counts
from bouncer_queue.storage.records import FLAG_COLUMNS, ExportRow, ResultRow, StoreTotals
from bouncer_queue.storage.tables import BatchModel, QueueModel, ResultModel, utcnow
from bouncer_queue.storage.transactions import Queries, translated

EXPORT_CHUNK_ROWS = 1_000
SKIPPED = EmailState.SKIPPED.value
_INVALID = EmailState.INVALID.value

#: A result's verdict columns, as ResultRow and Bouncer_Results name them.
RESULT_FIELDS = (
    "status",
    "reason",
    "score",
    "domain",
    "accept_all",
    "disposable",
    "free",
    "role",
    "disabled",
    "full_mailbox",
    "provider",
    "toxic",
    "toxicity",
)
_email, _raw_json = attrgetter("email"), attrgetter("raw_json")
_new_export_row = partial(tuple.__new__, ExportRow)  # its fields in order, without NamedTuple's Python __new__
#: ResultRow holds RESULT_FIELDS side by side (a test checks it), so one slice of it is the verdict columns.
_VERDICT_START = ResultRow._fields.index(RESULT_FIELDS[0])
_verdict = itemgetter(slice(_VERDICT_START, _VERDICT_START + len(RESULT_FIELDS)))
_RESULT_COLUMNS = ("request_id", "email", "batch_id", *RESULT_FIELDS, "raw", "verified_at")
_RESULT_KEY = ("request_id", "email")
_row_email = itemgetter(_RESULT_COLUMNS.index("email"))


class ResultQueries(Queries):
    """Writes of Bouncer_Results with the settlement they imply, and the export that reads them back."""

    @translated("store results")
    async def store_results(self, batch_id: int, results: Sequence[ResultRow]) -> StoreTotals:
        now = utcnow()
        async with self._db.write() as conn:
            # The batch's row is locked before its rows are settled: a row that ingest adds to the batch meanwhile
            # (a repeated address joining its first occurrence, storage/repeats.py) is then either settled here
            # or, once this commits, settled by ingest from these results. Never left `batched`.
            batch = select(BatchModel.request_id).where(BatchModel.id == batch_id).with_for_update()
            request_id = await conn.scalar(batch)
            if request_id is None:
                raise LookupError(f"no batch {batch_id}")
            rows = _result_rows(request_id, batch_id, results, bulk.time_value(conn, now))
            await bulk.upsert_rows(conn, ResultModel.__tablename__, _RESULT_COLUMNS, _RESULT_KEY, rows)
            if conn.dialect.name == "postgresql":
                # JIT compilation costs more than it saves on this one-pass update of up to BATCH_SIZE rows.
                await conn.execute(text("SET LOCAL jit = off"))
            await conn.execute(_settle_emails(batch_id, now))
            await conn.execute(
                batch_update(batch_id).values(
                    status=BatchState.DOWNLOADED.value,
                    downloaded_at=now,
                    completed_at=func.coalesce(BatchModel.completed_at, now),
                    updated_at=now,
                )
            )
            counts = await email_counts(conn, QueueModel.batch_id == batch_id)
        completed = counts.get(EmailState.COMPLETED.value, 0)
        return StoreTotals(
            stored=len(rows), emails_completed=completed, emails_missing=sum(counts.values()) - completed
        )

    async def iter_export(self, request_id: str, statuses: Collection[str] | None = None) -> AsyncIterator[ExportRow]:
        # Translated around the whole stream, not per call: the errors come while iterating.
        query = _export_query(request_id, statuses)
        async with self._db.guard("export a request"), self._db.read() as conn:
            result = await conn.stream(query.execution_options(yield_per=EXPORT_CHUNK_ROWS))
            # A chunk at a time: fetching row by row crosses into the driver's greenlet once per row.
            async for chunk in result.partitions(EXPORT_CHUNK_ROWS):
                for row in chunk:
                    yield _export_row(row)


def _settle_emails(batch_id: int, now: datetime) -> Any:
    """One set-based statement: each address of the batch is completed when it has a result, else failed (the
    outer join is planned once for the whole batch, where a per-row EXISTS probed the results row by row)."""
    joined = QueueModel.__table__.outerjoin(
        ResultModel.__table__,
        (ResultModel.request_id == QueueModel.request_id) & (ResultModel.email == func.lower(QueueModel.email)),
    )
    found = (
        select(QueueModel.id, ResultModel.id.is_not(None).label("has_result"))
        .select_from(joined)
        .where(QueueModel.batch_id == batch_id)
        .subquery()
    )
    state = case((found.c.has_result, EmailState.COMPLETED.value), else_=EmailState.FAILED.value)
    return update(QueueModel).where(QueueModel.id == found.c.id).values(status=state, updated_at=now)


def _result_rows(request_id: str, batch_id: int, results: Sequence[ResultRow], now: Any) -> list[bulk.Row]:
    """The Bouncer_Results rows in _RESULT_COLUMNS order, put together by C calls (no Python call a row): the email
    trimmed and lower-cased, the verdict as a slice of the ResultRow, Bouncer's text as `raw` (or the object
    encoded)."""
    emails = list(map(str.lower, map(str.strip, map(_email, results))))
    raws: list[str] = list(map(_raw_json, results))
    if countOf(raws, None):
        raws = [r.raw_json if r.raw_json is not None else json.dumps(r.raw or {}) for r in results]
    heads = zip(repeat(request_id), emails, repeat(batch_id))
    rows = map(add, map(add, heads, map(_verdict, results)), zip(raws, repeat(now)))
    # Last one wins on a repeated address, as the upsert would; PostgreSQL refuses one row twice per statement.
    by_email = dict(zip(emails, rows, strict=True))
    # One key order for every writer: two transactions upserting overlapping rows then cannot deadlock.
    return sorted(by_email.values(), key=_row_email)


def _export_query(request_id: str, statuses: Collection[str] | None) -> Any:
    joined = QueueModel.__table__.outerjoin(
        ResultModel.__table__,
        (ResultModel.request_id == QueueModel.request_id) & (ResultModel.email == func.lower(QueueModel.email)),
    )
    query = (
        select(
            QueueModel.email,
            QueueModel.name,
            QueueModel.row_number,
            QueueModel.extra,
            QueueModel.status.label("state"),
            ResultModel.status,
            ResultModel.reason,
            ResultModel.score,
            # As text: the driver (or SQLAlchemy's JSON type) would decode every row's object otherwise.
            ResultModel.raw.cast(Text).label("raw"),
            ResultModel.source,
            ResultModel.verified_at,
            QueueModel.updated_at,
            *(getattr(ResultModel, flag) for flag in FLAG_COLUMNS),
        )
        .select_from(joined)
        .where(QueueModel.request_id == request_id)
        # Input order: row numbers rise through a list; the id breaks ties (rows given without numbers).
        .order_by(QueueModel.row_number, QueueModel.id)
    )
    if statuses is not None:
        wanted: Any = ResultModel.status.in_(list(statuses))
        if SKIPPED in statuses:
            wanted = wanted | (QueueModel.status == SKIPPED)
        if LOCAL_STATUS in statuses:
            wanted = wanted | (QueueModel.status == EmailState.INVALID.value)
        query = query.where(wanted)
    return query


def _export_row(row: Row[Any]) -> ExportRow:
    # Unpacked once: a Row's attributes are looked up by name on every access, and this runs once per row.
    email, name, row_number, extra, state, status, reason, score, raw, source, verified_at, _, *flags = cast(
        "tuple[Any, ...]", row
    )
    if state == SKIPPED:
        return _skipped_row(row)
    if state == _INVALID:
        return _local_row(row)
    # JSON null (what an ORM write of None stores) reads as None, as SQLAlchemy's JSON type gives it.
    stored = raw if raw != "null" else None
    made: ExportRow = _new_export_row(
        (email, name, row_number, extra, state, status, reason, score, stored, source, verified_at, tuple(flags))
    )
    return made


def _local_row(row: Row[Any]) -> ExportRow:
    """The syntax pre-filter's answer, made when the row was stored."""
    return ExportRow(
        email=row.email,
        name=row.name,
        row_number=row.row_number,
        extra=row.extra,
        state=row.state,
        status=LOCAL_STATUS,
        reason=LOCAL_REASON,
        score=0,
        raw_json=None,
        source="local",
        verified_at=row.updated_at,
    )


def _skipped_row(row: Row[Any]) -> ExportRow:
    """A row without an address: its reason is kept in `name` (see storage/ingest.py)."""
    return ExportRow(
        email=row.email,
        name=None,
        row_number=row.row_number,
        extra=row.extra,
        state=SKIPPED,
        status=SKIPPED,
        reason=row.name,
        score=None,
        raw_json=None,
    )
