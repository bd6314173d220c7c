"""Batch lifecycle queries: reading batches and recording each step Bouncer reports, from submitted to dead.

A batch is born pending by ingest.py, takes a submission slot in claims.py, and is settled by results.py; in
between, the submit, poll and retry stages record what happened here. The helpers at the bottom (a guarded batch
update, the in-flight count, email states and counts) are shared with those modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bouncer_queue.domain import IN_FLIGHT_BATCH_STATES, BatchState, EmailState, Priority
from bouncer_queue.storage.records import BatchEmail, BatchRecord, SubmittedBatch
from bouncer_queue.storage.tables import BatchModel, QueueModel, utcnow
from bouncer_queue.storage.transactions import Queries, translated

_FINAL_STATES = (BatchState.DOWNLOADED.value, BatchState.DEAD.value)


class BatchQueries(Queries):
    """Reads and state changes of Bouncer_Batches rows (and their emails' states)."""

    @translated("read a batch")
    async def get_batch(self, batch_id: int) -> BatchRecord | None:
        async with self._db.read() as conn:
            row = (await conn.execute(select(BatchModel.__table__).where(BatchModel.id == batch_id))).first()
        return _batch_record(row) if row is not None else None

    @translated("read a batch's emails")
    async def batch_emails(self, batch_id: int) -> list[BatchEmail]:
        # Each address once (its first row), by the lower-cased key the results are stored under.
        firsts = select(func.min(QueueModel.id)).where(QueueModel.batch_id == batch_id)
        firsts = firsts.group_by(func.lower(QueueModel.email))
        query = select(QueueModel.email, QueueModel.name).where(QueueModel.id.in_(firsts)).order_by(QueueModel.id)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [BatchEmail(email, name) for email, name in rows]

    @translated("release a submission slot", must_land=True)
    async def release_submission(self, batch_id: int, error: str | None) -> None:
        values: dict[str, Any] = {"status": BatchState.PENDING.value, "updated_at": utcnow()}
        if error is not None:
            values["last_error"] = error
        async with self._db.write() as conn:
            await conn.execute(batch_update(batch_id, BatchState.SUBMITTING).values(**values))

    @translated("record a submitted batch", must_land=True)
    async def record_batch_submitted(self, batch_id: int, answer: SubmittedBatch) -> None:
        async with self._db.write() as conn:
            await _record_submitted(conn, batch_id, answer)

    @translated("take a batch callback")
    async def take_callback(self, token_digest: str, answer: SubmittedBatch | None) -> BatchRecord | None:
        """The batch holding this callback token, as it was, with the token cleared (each token works once);
        a batch still `submitting` is recorded as submitted with `answer` first. None for an unknown token."""
        holder = select(BatchModel.__table__).where(BatchModel.callback_token == token_digest)
        async with self._db.write() as conn:
            row = (await conn.execute(holder)).first()
            if row is None:
                return None
            take = batch_update(row.id).where(BatchModel.callback_token == token_digest).values(callback_token=None)
            if not (await conn.execute(take)).rowcount:
                return None  # a concurrent callback with the same token took it first
            if row.status == BatchState.SUBMITTING.value and answer is not None:
                await _record_submitted(conn, row.id, answer)
        return _batch_record(row)

    @translated("record batch progress")
    async def record_batch_progress(self, batch_id: int, status: BatchState, processed: int | None) -> None:
        values: dict[str, Any] = {"status": status.value, "updated_at": utcnow()}
        if processed is not None:
            values["processed"] = processed
        query = batch_update(batch_id).where(BatchModel.status.not_in(_FINAL_STATES)).values(**values)
        async with self._db.write() as conn:
            await conn.execute(query)

    @translated("record a completed batch")
    async def record_batch_completed(self, batch_id: int, credits_used: int | None) -> None:
        now = utcnow()
        query = batch_update(batch_id).values(
            status=BatchState.COMPLETED.value, credits_used=credits_used, completed_at=now, updated_at=now
        )
        async with self._db.write() as conn:
            await conn.execute(query)

    @translated("mark a batch failed")
    async def mark_batch_failed(self, batch_id: int, error: str) -> None:
        query = batch_update(batch_id).values(status=BatchState.FAILED.value, last_error=error, updated_at=utcnow())
        async with self._db.write() as conn:
            await conn.execute(query)

    @translated("mark a batch dead")
    async def mark_batch_dead(self, batch_id: int, error_class: str, message: str) -> None:
        error = f"{error_class}: {message}"
        query = batch_update(batch_id).values(status=BatchState.DEAD.value, last_error=error, updated_at=utcnow())
        async with self._db.write() as conn:
            await conn.execute(query)
            await _set_email_states(conn, batch_id, EmailState.DEAD)

    @translated("reset a batch for retry")
    async def reset_batch_for_retry(self, batch_id: int) -> None:
        query = (
            batch_update(batch_id)
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
        async with self._db.write() as conn:
            if (await conn.execute(query)).rowcount:
                await _set_email_states(conn, batch_id, EmailState.BATCHED)

    @translated("cancel a request's unsent batches")
    async def cancel_unsent_batches(self, request_id: str) -> int:
        unsent = [BatchState.PENDING.value, BatchState.FAILED.value]
        mine = (BatchModel.request_id == request_id) & BatchModel.status.in_(unsent)
        async with self._db.write() as conn:
            ids = list((await conn.execute(select(BatchModel.id).where(mine))).scalars())
            if not ids:
                return 0
            now = utcnow()
            batches = update(BatchModel).where(BatchModel.id.in_(ids), BatchModel.status.in_(unsent))
            await conn.execute(batches.values(status=BatchState.CANCELLED.value, updated_at=now))
            emails = update(QueueModel).where(QueueModel.batch_id.in_(ids))
            await conn.execute(emails.values(status=EmailState.CANCELLED.value, updated_at=now))
        return len(ids)

    @translated("count batches in flight")
    async def in_flight_count(self) -> int:
        async with self._db.read() as conn:
            return await in_flight(conn)

    @translated("list batches")
    async def batches_in_states(self, states: Iterable[BatchState], request_id: str | None = None) -> list[BatchRecord]:
        wanted = [BatchState(s).value for s in states]
        query = select(BatchModel.__table__).where(BatchModel.status.in_(wanted)).order_by(BatchModel.id)
        if request_id is not None:
            query = query.where(BatchModel.request_id == request_id)
        async with self._db.read() as conn:
            return [_batch_record(row) for row in (await conn.execute(query)).all()]

    @translated("find the oldest pending batch")
    async def oldest_pending_batch_created_at(self) -> datetime | None:
        query = select(func.min(BatchModel.created_at)).where(BatchModel.status == BatchState.PENDING.value)
        async with self._db.read() as conn:
            value: datetime | None = await conn.scalar(query)
        return value


def batch_update(batch_id: int, only_from: BatchState | None = None) -> Any:
    """UPDATE of one batch, only while it is in `only_from` when given."""
    query = update(BatchModel).where(BatchModel.id == batch_id)
    return query.where(BatchModel.status == only_from.value) if only_from is not None else query


async def in_flight(conn: AsyncConnection) -> int:
    """How many batches hold a submission slot, as seen by `conn`'s transaction."""
    states = [s.value for s in IN_FLIGHT_BATCH_STATES]
    return int(await conn.scalar(select(func.count()).where(BatchModel.status.in_(states))) or 0)


async def email_counts(conn: AsyncConnection, where: Any) -> dict[str, int]:
    """Emails matching `where`, counted by state."""
    query = select(QueueModel.status, func.count()).where(where).group_by(QueueModel.status)
    return {status: int(n) for status, n in (await conn.execute(query)).all()}


async def _record_submitted(conn: AsyncConnection, batch_id: int, answer: SubmittedBatch) -> None:
    """Bouncer's answer to a create, recorded only while the batch is `submitting`: the create's answer and
    Bouncer's callback may both arrive, and the later one must not undo what the earlier one started."""
    now = utcnow()
    values: dict[str, Any] = {
        "bouncer_batch_id": answer.bouncer_batch_id,
        "duplicates": answer.duplicates,
        "status": answer.status.value,
        "submitted_at": now,
        "updated_at": now,
    }
    if answer.quantity is not None:
        values["quantity"] = answer.quantity
    batch = batch_update(batch_id, BatchState.SUBMITTING).values(**values)
    if (await conn.execute(batch)).rowcount:
        await _set_email_states(conn, batch_id, EmailState.SUBMITTED, only=(EmailState.BATCHED,))


async def _set_email_states(
    conn: AsyncConnection, batch_id: int, state: EmailState, only: Sequence[EmailState] = ()
) -> None:
    query = update(QueueModel).where(QueueModel.batch_id == batch_id)
    if only:
        query = query.where(QueueModel.status.in_([s.value for s in only]))
    await conn.execute(query.values(status=state.value, updated_at=utcnow()))


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
        billable=row.billable,
        attempts=row.attempts,
        retries=row.retries,
        last_error=row.last_error,
        created_at=row.created_at,
        submitted_at=row.submitted_at,
        completed_at=row.completed_at,
        downloaded_at=row.downloaded_at,
        updated_at=row.updated_at,
    )
