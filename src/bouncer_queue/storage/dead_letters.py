"""Dead letters: jobs that exhausted their attempts, kept in Bouncer_Dead_Letter_Queue until someone replays them.

pipeline/deadletter.py adds one when a job gives up; the operator lists, inspects and replays them (the `dlq`
commands). Marking one replayed only stamps `replayed_at`: the caller enqueues the job again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Row, insert, select, update

from bouncer_queue.storage.records import DeadLetter
from bouncer_queue.storage.tables import DeadLetterModel, utcnow
from bouncer_queue.storage.transactions import Queries, new_id, translated


class DeadLetterQueries(Queries):
    """Writes and reads of Bouncer_Dead_Letter_Queue."""

    @translated("add a dead letter")
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
        async with self._db.write() as conn:
            return new_id(await conn.execute(query))

    @translated("list dead letters")
    async def list_dead_letters(self, include_replayed: bool = False, limit: int = 100) -> list[DeadLetter]:
        query = select(DeadLetterModel.__table__).order_by(DeadLetterModel.id.desc()).limit(limit)
        if not include_replayed:
            query = query.where(DeadLetterModel.replayed_at.is_(None))
        async with self._db.read() as conn:
            return [_dead_letter(row) for row in (await conn.execute(query)).all()]

    @translated("read a dead letter")
    async def get_dead_letter(self, dead_letter_id: int) -> DeadLetter | None:
        query = select(DeadLetterModel.__table__).where(DeadLetterModel.id == dead_letter_id)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        return _dead_letter(row) if row is not None else None

    @translated("mark a dead letter replayed")
    async def mark_dead_letter_replayed(self, dead_letter_id: int) -> None:
        query = update(DeadLetterModel).where(DeadLetterModel.id == dead_letter_id).values(replayed_at=utcnow())
        async with self._db.write() as conn:
            await conn.execute(query)


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
