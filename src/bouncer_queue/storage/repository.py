"""The repository: every query the system runs, as intent-named async methods over plain records.

This is the only module that builds select()/insert()/update(); the pipeline, the health checks and the
interfaces see `Repository` and the dataclasses of storage/records.py, never an ORM object or a connection.
Each public method is one transaction and translates database errors into StorageError (password masked).
Bulk writes go through storage/bulk.py, the engine's fast path; submission slots are claimed under an
engine-specific lock (see `try_claim_submission`) so MAX_CONCURRENT_BATCHES holds across processes and machines.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from enum import StrEnum
from functools import wraps
from json.encoder import encode_basestring_ascii as _json_string
from operator import attrgetter
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import CursorResult, Row, case, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bouncer_queue.domain import IN_FLIGHT_BATCH_STATES, BatchState, EmailState, Priority
from bouncer_queue.storage import bulk
from bouncer_queue.storage.boundary import SourceError, translate_errors
from bouncer_queue.storage.db import READ_ONLY_OPTION, mask_url
from bouncer_queue.storage.records import (
    BatchEmail,
    BatchRecord,
    DeadLetter,
    EmailRow,
    ExportRow,
    HealthMetric,
    RequestInfo,
    RequestProgress,
    ResultRow,
    StoreTotals,
)
from bouncer_queue.storage.tables import (
    HEALTH_NUMBER_COLUMNS,
    BatchModel,
    DeadLetterModel,
    HealthMetricModel,
    QueueModel,
    ResultModel,
    utcnow,
)

P = ParamSpec("P")
T = TypeVar("T")

#: Any number that fits in a bigint identifies the claim lock (pg_advisory_xact_lock / GET_LOCK name).
CLAIM_LOCK_KEY = 0x626F756E636572
CLAIM_LOCK_NAME = "bouncer_queue.claim_submission"
CLAIM_LOCK_TIMEOUT_SECONDS = 30
EXPORT_CHUNK_ROWS = 1_000

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
_RESULT_FIELDS = (
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
_result_fields = attrgetter(*_RESULT_FIELDS)
_RESULT_COLUMNS = ("request_id", "email", "batch_id", *_RESULT_FIELDS, "raw", "verified_at")
_RESULT_KEY = ("request_id", "email")


class ClaimResult(StrEnum):
    """The outcome of `Repository.try_claim_submission`."""

    CLAIMED = "claimed"  #: the batch is now submitting and holds a slot
    FULL = "full"  #: every slot is taken; try again when one frees
    NOT_PENDING = "not_pending"  #: the batch is missing or no longer pending (another worker has it)


_Method = Callable[Concatenate["Repository", P], Coroutine[Any, Any, T]]


def _translated(operation: str) -> Callable[[_Method[P, T]], _Method[P, T]]:
    def decorate(method: _Method[P, T]) -> _Method[P, T]:
        @wraps(method)
        async def wrapper(self: Repository, /, *args: P.args, **kwargs: P.kwargs) -> T:
            async with self._guard(operation):
                return await method(self, *args, **kwargs)

        return wrapper

    return decorate


class Repository:
    """Intent-named queries over the six Bouncer_* tables; safe to share between tasks of one process."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._masked_url = mask_url(engine.url)
        self._password = engine.url.password

    def _guard(self, operation: str) -> AbstractAsyncContextManager[None]:
        return translate_errors(self._masked_url, operation, self._password)

    def _write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self._engine.begin()

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self._engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY_OPTION: True})
            async with conn.begin():
                yield conn

    # Ingest

    @_translated("ingest a request")
    async def ingest_request(
        self,
        request: RequestInfo,
        chunks: Iterable[Sequence[EmailRow]] | AsyncIterable[Sequence[EmailRow]],
    ) -> list[int]:
        """Store a request in ONE transaction: a pending batch per chunk and its emails; return the batch ids.

        Chunks are consumed one at a time, so a list of any size streams through; an exception from `chunks`
        rolls everything back and propagates unchanged.
        """
        batch_ids: list[int] = []
        async with self._write() as conn:
            async for chunk in _guarded_chunks(chunks):
                if chunk:
                    batch_ids.append(await self._ingest_chunk(conn, request, chunk))
        return batch_ids

    async def _ingest_chunk(self, conn: AsyncConnection, request: RequestInfo, chunk: Sequence[EmailRow]) -> int:
        now = utcnow()
        priority = int(request.priority)
        result = await conn.execute(
            insert(BatchModel).values(
                **_new_batch_values(now),
                request_id=request.request_id,
                user_id=request.user_id,
                priority=priority,
                delay_ms=request.delay_ms,
                quantity=len(chunk),
            )
        )
        batch_id = _new_id(result)
        head = (request.request_id, request.user_id)
        batched = EmailState.BATCHED.value
        rows = [
            (*head, r.email, r.name, r.row_number, _json(r.extra), priority, batched, batch_id, now, now) for r in chunk
        ]
        await bulk.insert_rows(conn, QueueModel.__tablename__, _QUEUE_COLUMNS, rows)
        return batch_id

    # Batches

    @_translated("read a batch")
    async def get_batch(self, batch_id: int) -> BatchRecord | None:
        """The batch, or None when there is no such id."""
        async with self._read() as conn:
            row = (await conn.execute(select(BatchModel.__table__).where(BatchModel.id == batch_id))).first()
        return _batch_record(row) if row is not None else None

    @_translated("read a batch's emails")
    async def batch_emails(self, batch_id: int) -> list[BatchEmail]:
        """The batch's addresses with their names, in row order: what is sent to Bouncer."""
        query = select(QueueModel.email, QueueModel.name).where(QueueModel.batch_id == batch_id).order_by(QueueModel.id)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [BatchEmail(email=r.email, name=r.name) for r in rows]

    @_translated("claim a submission slot")
    async def try_claim_submission(self, batch_id: int, max_in_flight: int) -> ClaimResult:
        """Atomically move a pending batch to submitting (attempts + 1) if fewer than `max_in_flight` are in flight.

        Atomic across processes and machines: the check and the update run under one database-wide lock.
        PostgreSQL: a transaction-scoped advisory lock (released by commit or a dropped connection, never
        leaked). SQLite: BEGIN IMMEDIATE already holds the single write lock. MariaDB: GET_LOCK, a named
        server lock (session-scoped, so released explicitly and by a dropped connection); the work runs in a
        transaction started after the lock is held, so its snapshot sees every earlier claim.
        """
        if self._engine.dialect.name == "mysql":
            return await self._claim_mysql(batch_id, max_in_flight)
        async with self._write() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK_KEY})
            return await _claim(conn, batch_id, max_in_flight)

    async def _claim_mysql(self, batch_id: int, max_in_flight: int) -> ClaimResult:
        async with self._engine.connect() as conn:
            got = await conn.scalar(
                text("SELECT GET_LOCK(:name, :timeout)"),
                {"name": CLAIM_LOCK_NAME, "timeout": CLAIM_LOCK_TIMEOUT_SECONDS},
            )
            await conn.commit()
            if got != 1:
                raise TimeoutError(f"claim lock not granted within {CLAIM_LOCK_TIMEOUT_SECONDS} s")
            try:
                async with conn.begin():
                    return await _claim(conn, batch_id, max_in_flight)
            finally:
                await conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": CLAIM_LOCK_NAME})
                await conn.commit()

    @_translated("release a submission slot")
    async def release_submission(self, batch_id: int, error: str | None) -> None:
        """Give the slot back: submitting -> pending, because the create request certainly never reached Bouncer."""
        values: dict[str, Any] = {"status": BatchState.PENDING.value, "updated_at": utcnow()}
        if error is not None:
            values["last_error"] = error
        async with self._write() as conn:
            await conn.execute(_batch_update(batch_id, BatchState.SUBMITTING).values(**values))

    @_translated("record a submitted batch")
    async def record_batch_submitted(
        self, batch_id: int, bouncer_batch_id: str, quantity: int, duplicates: int, status: BatchState
    ) -> None:
        """Bouncer accepted the batch: store its id and counts, and mark its emails submitted."""
        now = utcnow()
        batch = _batch_update(batch_id).values(
            bouncer_batch_id=bouncer_batch_id,
            quantity=quantity,
            duplicates=duplicates,
            status=status.value,
            submitted_at=now,
            updated_at=now,
        )
        async with self._write() as conn:
            await conn.execute(batch)
            await _set_email_states(conn, batch_id, EmailState.SUBMITTED, only=(EmailState.BATCHED,))

    @_translated("record batch progress")
    async def record_batch_progress(self, batch_id: int, status: BatchState, processed: int | None) -> None:
        """Store what a status poll saw; ignored once the batch is downloaded or dead (a late poll changes nothing)."""
        values: dict[str, Any] = {"status": status.value, "updated_at": utcnow()}
        if processed is not None:
            values["processed"] = processed
        query = _batch_update(batch_id).where(BatchModel.status.not_in(_FINAL_STATES)).values(**values)
        async with self._write() as conn:
            await conn.execute(query)

    @_translated("record a completed batch")
    async def record_batch_completed(self, batch_id: int, credits_used: int | None) -> None:
        """Bouncer finished the batch; its results are ready to download."""
        now = utcnow()
        query = _batch_update(batch_id).values(
            status=BatchState.COMPLETED.value, credits_used=credits_used, completed_at=now, updated_at=now
        )
        async with self._write() as conn:
            await conn.execute(query)

    @_translated("store results")
    async def store_results(self, batch_id: int, results: Sequence[ResultRow]) -> StoreTotals:
        """Upsert a batch's results and settle its emails (completed if a result exists, else failed), in ONE
        transaction; the batch becomes downloaded. Idempotent: storing the same results again changes nothing.
        Addresses are matched case-insensitively; result emails are stored lower-cased.
        """
        now = utcnow()
        async with self._write() as conn:
            request_id = await conn.scalar(select(BatchModel.request_id).where(BatchModel.id == batch_id))
            if request_id is None:
                raise LookupError(f"no batch {batch_id}")
            rows = _result_rows(request_id, batch_id, results, now)
            await bulk.upsert_rows(conn, ResultModel.__tablename__, _RESULT_COLUMNS, _RESULT_KEY, rows)
            if conn.dialect.name == "postgresql":
                # JIT compilation costs more than it saves on this one-pass update of up to BATCH_SIZE rows.
                await conn.execute(text("SET LOCAL jit = off"))
            await conn.execute(_settle_emails(batch_id, now))
            await conn.execute(
                _batch_update(batch_id).values(
                    status=BatchState.DOWNLOADED.value,
                    downloaded_at=now,
                    completed_at=func.coalesce(BatchModel.completed_at, now),
                    updated_at=now,
                )
            )
            counts = await _email_counts(conn, QueueModel.batch_id == batch_id)
        completed = counts.get(EmailState.COMPLETED.value, 0)
        return StoreTotals(
            stored=len(rows), emails_completed=completed, emails_missing=sum(counts.values()) - completed
        )

    @_translated("mark a batch failed")
    async def mark_batch_failed(self, batch_id: int, error: str) -> None:
        """Bouncer reported a failure; a retry may follow (`reset_batch_for_retry`)."""
        query = _batch_update(batch_id).values(status=BatchState.FAILED.value, last_error=error, updated_at=utcnow())
        async with self._write() as conn:
            await conn.execute(query)

    @_translated("mark a batch dead")
    async def mark_batch_dead(self, batch_id: int, error_class: str, message: str) -> None:
        """Give up on the batch and its emails."""
        error = f"{error_class}: {message}"
        query = _batch_update(batch_id).values(status=BatchState.DEAD.value, last_error=error, updated_at=utcnow())
        async with self._write() as conn:
            await conn.execute(query)
            await _set_email_states(conn, batch_id, EmailState.DEAD)

    @_translated("reset a batch for retry")
    async def reset_batch_for_retry(self, batch_id: int) -> None:
        """A failed or dead batch goes back to pending (retries + 1) with its emails; other states are left alone."""
        query = (
            _batch_update(batch_id)
            .where(BatchModel.status.in_([BatchState.FAILED.value, BatchState.DEAD.value]))
            .values(
                status=BatchState.PENDING.value,
                retries=BatchModel.retries + 1,
                bouncer_batch_id=None,
                processed=0,
                submitted_at=None,
                completed_at=None,
                updated_at=utcnow(),
            )
        )
        async with self._write() as conn:
            if (await conn.execute(query)).rowcount:
                await _set_email_states(conn, batch_id, EmailState.BATCHED)

    @_translated("count batches in flight")
    async def in_flight_count(self) -> int:
        """How many batches hold a MAX_CONCURRENT_BATCHES slot."""
        async with self._read() as conn:
            return await _in_flight(conn)

    @_translated("list batches")
    async def batches_in_states(self, states: Iterable[BatchState]) -> list[BatchRecord]:
        """Every batch in one of `states`, oldest first."""
        wanted = [BatchState(s).value for s in states]
        query = select(BatchModel.__table__).where(BatchModel.status.in_(wanted)).order_by(BatchModel.id)
        async with self._read() as conn:
            return [_batch_record(row) for row in (await conn.execute(query)).all()]

    @_translated("find the oldest pending batch")
    async def oldest_pending_batch_created_at(self) -> datetime | None:
        """When the longest-waiting pending batch was created, or None when none waits."""
        query = select(func.min(BatchModel.created_at)).where(BatchModel.status == BatchState.PENDING.value)
        async with self._read() as conn:
            value: datetime | None = await conn.scalar(query)
        return value

    # Dead letters

    @_translated("add a dead letter")
    async def add_dead_letter(
        self,
        queue: str,
        job_name: str,
        payload: Mapping[str, Any],
        error_class: str,
        message: str,
        attempts: int,
        batch_id: int | None = None,
        request_id: str | None = None,
    ) -> int:
        """Record a job that exhausted its attempts; return the dead letter's id."""
        query = insert(DeadLetterModel).values(
            queue=queue,
            job_name=job_name,
            payload=dict(payload),
            error_class=error_class,
            message=message,
            attempts=attempts,
            batch_id=batch_id,
            request_id=request_id,
            created_at=utcnow(),
        )
        async with self._write() as conn:
            return _new_id(await conn.execute(query))

    @_translated("list dead letters")
    async def list_dead_letters(self, include_replayed: bool = False, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters first; replayed ones only when asked."""
        query = select(DeadLetterModel.__table__).order_by(DeadLetterModel.id.desc()).limit(limit)
        if not include_replayed:
            query = query.where(DeadLetterModel.replayed_at.is_(None))
        async with self._read() as conn:
            return [_dead_letter(row) for row in (await conn.execute(query)).all()]

    @_translated("read a dead letter")
    async def get_dead_letter(self, dead_letter_id: int) -> DeadLetter | None:
        """The dead letter, or None."""
        query = select(DeadLetterModel.__table__).where(DeadLetterModel.id == dead_letter_id)
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
        return _dead_letter(row) if row is not None else None

    @_translated("mark a dead letter replayed")
    async def mark_dead_letter_replayed(self, dead_letter_id: int) -> None:
        """Note that the job was enqueued again."""
        query = update(DeadLetterModel).where(DeadLetterModel.id == dead_letter_id).values(replayed_at=utcnow())
        async with self._write() as conn:
            await conn.execute(query)

    # Requests and exports

    @_translated("read request progress")
    async def request_progress(self, request_id: str) -> RequestProgress:
        """Counts of the request's emails and batches by state."""
        batches = select(BatchModel.status, func.count()).where(BatchModel.request_id == request_id)
        async with self._read() as conn:
            emails = await _email_counts(conn, QueueModel.request_id == request_id)
            by_batch = {s: int(n) for s, n in (await conn.execute(batches.group_by(BatchModel.status))).all()}
        return RequestProgress(
            request_id=request_id,
            emails_total=sum(emails.values()),
            emails_by_state=emails,
            batches_total=sum(by_batch.values()),
            batches_by_state=by_batch,
        )

    async def iter_export(self, request_id: str, statuses: Collection[str] | None = None) -> AsyncIterator[ExportRow]:
        """Stream the request's rows in row order, each joined with its result; `statuses` filters on the result
        status (rows without a result only appear when `statuses` is None). Rows are fetched in chunks from a
        server-side cursor, so a million-row export never sits in memory."""
        query = _export_query(request_id, statuses)
        async with self._guard("export a request"), self._read() as conn:
            result = await conn.stream(query.execution_options(yield_per=EXPORT_CHUNK_ROWS))
            async for row in result:
                yield _export_row(row)

    @_translated("find a request's user")
    async def request_user(self, request_id: str) -> str | None:
        """Who submitted the request, or None for an unknown request."""
        query = select(BatchModel.user_id).where(BatchModel.request_id == request_id).limit(1)
        async with self._read() as conn:
            user: str | None = await conn.scalar(query)
        return user

    # Health

    @_translated("record a health metric")
    async def record_health_metric(self, metric: HealthMetric, numbers: Mapping[str, float | None]) -> int:
        """Store one health check; `numbers` fills the chartable columns (HEALTH_NUMBER_COLUMNS). Return its id."""
        unknown = set(numbers) - set(HEALTH_NUMBER_COLUMNS)
        if unknown:
            raise ValueError(f"unknown health metric columns: {sorted(unknown)}; valid: {HEALTH_NUMBER_COLUMNS}")
        query = insert(HealthMetricModel).values(
            recorded_at=metric.recorded_at or utcnow(),
            status=metric.status,
            alerts=list(metric.alerts),
            snapshot=dict(metric.snapshot),
            **numbers,
        )
        async with self._write() as conn:
            return _new_id(await conn.execute(query))

    @_translated("read health metrics")
    async def recent_health_metrics(self, limit: int = 20) -> list[HealthMetric]:
        """The newest health checks first."""
        table = HealthMetricModel
        query = select(table.__table__).order_by(table.recorded_at.desc(), table.id.desc()).limit(limit)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            HealthMetric(
                status=r.status,
                snapshot=r.snapshot,
                alerts=tuple(r.alerts or ()),
                recorded_at=r.recorded_at,
                id=r.id,
            )
            for r in rows
        ]

    @_translated("prune health metrics")
    async def prune_health_metrics(self, older_than: datetime) -> int:
        """Delete health checks recorded before `older_than`; return how many."""
        query = delete(HealthMetricModel).where(HealthMetricModel.recorded_at < older_than)
        async with self._write() as conn:
            return int((await conn.execute(query)).rowcount)

    @_translated("ping")
    async def ping(self) -> float:
        """Round-trip one trivial query; return the latency in seconds."""
        started = time.perf_counter()
        async with self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return time.perf_counter() - started


_FINAL_STATES = (BatchState.DOWNLOADED.value, BatchState.DEAD.value)


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


async def _claim(conn: AsyncConnection, batch_id: int, max_in_flight: int) -> ClaimResult:
    status = await conn.scalar(select(BatchModel.status).where(BatchModel.id == batch_id))
    if status != BatchState.PENDING.value:
        return ClaimResult.NOT_PENDING
    if await _in_flight(conn) >= max_in_flight:
        return ClaimResult.FULL
    query = (
        _batch_update(batch_id, BatchState.PENDING)
        .values(status=BatchState.SUBMITTING.value, attempts=BatchModel.attempts + 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    updated = (await conn.execute(query)).rowcount
    return ClaimResult.CLAIMED if updated else ClaimResult.NOT_PENDING


async def _in_flight(conn: AsyncConnection) -> int:
    states = [s.value for s in IN_FLIGHT_BATCH_STATES]
    return int(await conn.scalar(select(func.count()).where(BatchModel.status.in_(states))) or 0)


def _batch_update(batch_id: int, only_from: BatchState | None = None) -> Any:
    query = update(BatchModel).where(BatchModel.id == batch_id)
    return query.where(BatchModel.status == only_from.value) if only_from is not None else query


async def _set_email_states(
    conn: AsyncConnection, batch_id: int, state: EmailState, only: Sequence[EmailState] = ()
) -> None:
    query = update(QueueModel).where(QueueModel.batch_id == batch_id)
    if only:
        query = query.where(QueueModel.status.in_([s.value for s in only]))
    await conn.execute(query.values(status=state.value, updated_at=utcnow()))


def _settle_emails(batch_id: int, now: datetime) -> Any:
    has_result = (
        select(ResultModel.id)
        .where(ResultModel.request_id == QueueModel.request_id, ResultModel.email == func.lower(QueueModel.email))
        .exists()
    )
    state = case((has_result, EmailState.COMPLETED.value), else_=EmailState.FAILED.value)
    return update(QueueModel).where(QueueModel.batch_id == batch_id).values(status=state, updated_at=now)


async def _email_counts(conn: AsyncConnection, where: Any) -> dict[str, int]:
    query = select(QueueModel.status, func.count()).where(where).group_by(QueueModel.status)
    return {status: int(n) for status, n in (await conn.execute(query)).all()}


def _result_rows(request_id: str, batch_id: int, results: Sequence[ResultRow], now: datetime) -> list[bulk.Row]:
    by_email: dict[str, bulk.Row] = {}
    for r in results:
        email = r.email.strip().lower()
        # Last one wins on a repeated address, as the upsert would; PostgreSQL refuses one row twice per statement.
        by_email[email] = (
            request_id,
            email,
            batch_id,
            *_result_fields(r),
            json.dumps(dict(r.raw)),
            now,
        )
    return list(by_email.values())


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
            ResultModel.raw,
        )
        .select_from(joined)
        .where(QueueModel.request_id == request_id)
        .order_by(QueueModel.id)
    )
    if statuses is not None:
        query = query.where(ResultModel.status.in_(list(statuses)))
    return query


def _export_row(row: Row[Any]) -> ExportRow:
    return ExportRow(
        email=row.email,
        name=row.name,
        row_number=row.row_number,
        extra=row.extra,
        state=row.state,
        status=row.status,
        reason=row.reason,
        score=row.score,
        raw=row.raw,
    )


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


def _batch_record(row: Row[Any]) -> BatchRecord:
    return BatchRecord(
        id=row.id,
        request_id=row.request_id,
        user_id=row.user_id,
        priority=Priority(row.priority),
        status=BatchState(row.status),
        quantity=row.quantity,
        bouncer_batch_id=row.bouncer_batch_id,
        duplicates=row.duplicates,
        processed=row.processed,
        credits_used=row.credits_used,
        attempts=row.attempts,
        retries=row.retries,
        last_error=row.last_error,
        created_at=row.created_at,
        submitted_at=row.submitted_at,
        completed_at=row.completed_at,
        downloaded_at=row.downloaded_at,
    )


def _dead_letter(row: Row[Any]) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        queue=row.queue,
        job_name=row.job_name,
        payload=row.payload,
        error_class=row.error_class,
        message=row.message,
        attempts=row.attempts,
        created_at=row.created_at,
        replayed_at=row.replayed_at,
        batch_id=row.batch_id,
        request_id=row.request_id,
    )


def _new_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the insert returned no primary key")
    return int(key[0])


def _json(value: Mapping[str, str] | None) -> str | None:
    """json.dumps(value), byte for byte; a flat text-to-text mapping (every list row's `extra`) is encoded
    directly, twice as fast as json.dumps, which costs seconds over a million rows."""
    if value is None:
        return None
    try:
        return "{" + ", ".join([f"{_json_string(k)}: {_json_string(v)}" for k, v in value.items()]) + "}"
    except TypeError:  # a key or value that is not text
        return json.dumps(dict(value))
