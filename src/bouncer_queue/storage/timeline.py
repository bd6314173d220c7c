"""A request's timeline across its batches: when the first reached Bouncer, when the last settled, what they cost;
and the batches themselves, for the dashboard's request page.

The HTTP API's progress answer (GET /requests/{id}) adds this to the counts of storage/ingest.py, and estimates
the time left from it.
"""

from __future__ import annotations

from sqlalchemy import func, select

from bouncer_queue.domain import BatchState
from bouncer_queue.storage.batches import BatchQueries
from bouncer_queue.storage.records import BatchRecord, RequestTimeline
from bouncer_queue.storage.tables import BatchModel
from bouncer_queue.storage.transactions import Queries, translated

_SETTLED = (BatchState.DOWNLOADED.value, BatchState.DEAD.value)


class TimelineQueries(Queries):
    """Aggregates over a request's Bouncer_Batches rows."""

    @translated("read a request's timeline")
    async def request_timeline(self, request_id: str) -> RequestTimeline:
        b = BatchModel
        mine = b.request_id == request_id
        spent = select(func.coalesce(func.sum(b.credits_used), 0), func.min(b.submitted_at)).where(mine)
        settled = select(func.max(b.updated_at)).where(mine, b.status.in_(_SETTLED))
        async with self._db.read() as conn:
            credits, started = (await conn.execute(spent)).one()
            last = await conn.scalar(settled)
        return RequestTimeline(credits_used=int(credits or 0), started_at=started, last_finished_at=last)

    @translated("list a request's batches")
    async def request_batches(self, request_id: str, limit: int = 500) -> list[BatchRecord]:
        query = select(BatchModel.id).where(BatchModel.request_id == request_id).order_by(BatchModel.id).limit(limit)
        async with self._db.read() as conn:
            ids = list((await conn.scalars(query)).all())
        batches = BatchQueries(self._db)
        return [batch for batch_id in ids if (batch := await batches.get_batch(batch_id)) is not None]
