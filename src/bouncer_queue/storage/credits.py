"""Credits in the ledger: which stored rows are billable, what is held in reserve, and what was spent.

`settle_billable` runs inside each chunk's ingest transaction (ingest.py), once the chunk's rows are stored: it
answers from earlier requests' results what the cache may answer of the chunk's batch (set-based, one INSERT ...
SELECT and one UPDATE, whatever its size) and recounts that batch (deleted when left empty); `record_billable` then
records the request's running billable count (with ingest's totals, in one UPDATE) and asks the request's
CreditCheck with it under the reservation lock, so that two requests stored at once cannot both count on one
balance. A refusal rolls the chunk back: the list stops there.
`CreditQueries` reads the credits held and spent, per request and in all.

Reserved credits are the billable addresses of batches not yet at Bouncer (pending, or failed and due for a
retry); spent ones are those of batches Bouncer has, at what it charged once it says (`credits_used`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, case, delete, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bouncer_queue.domain import BatchState, EmailState, RequestState
from bouncer_queue.errors import CreditsRefused
from bouncer_queue.storage.locks import NamedLock, take
from bouncer_queue.storage.records import RequestInfo
from bouncer_queue.storage.results import RESULT_FIELDS
from bouncer_queue.storage.tables import BatchModel, QueueModel, RequestModel, ResultModel, utcnow
from bouncer_queue.storage.transactions import Queries, translated

#: The reservation lock (locks.py): a chunk's credit check and its commit run under it, whatever the engine. Its
#: key is any bigint distinct from the other locks'.
RESERVE_LOCK = NamedLock("bouncer_queue.reserve_credits", 0x6372656469747321)
CACHE_SOURCE = "cache"
_HELD_STATES = (BatchState.PENDING.value, BatchState.FAILED.value)
_AT_BOUNCER = tuple(
    s.value for s in (BatchState.QUEUED, BatchState.PROCESSING, BatchState.COMPLETED, BatchState.DOWNLOADED)
)
#: What the cache copies of an earlier answer (its `verified_at` too: the answer is as old as it was).
_CACHE_COPIED = ("email", *RESULT_FIELDS, "raw", "verified_at")


@dataclass(frozen=True)
class RequestCredits:
    """One request's credits: what it costs in all, what is held for its unsent batches, what was spent."""

    request_id: str
    billable: int
    reserved: int
    spent: int


class CreditQueries(Queries):
    """Credits held in reserve and spent, per active request."""

    @translated("read credits")
    async def request_credits(self, request_ids: list[str] | None = None) -> list[RequestCredits]:
        """Per request (the active and ingesting ones unless `request_ids` is given), oldest first."""
        where = (
            RequestModel.request_id.in_(request_ids)
            if request_ids is not None
            else RequestModel.status.in_((RequestState.ACTIVE.value, RequestState.INGESTING.value))
        )
        query = (
            select(RequestModel.request_id, RequestModel.billable, *_held_and_spent())
            .outerjoin(BatchModel, BatchModel.request_id == RequestModel.request_id)
            .where(where)
            .group_by(RequestModel.request_id, RequestModel.billable, RequestModel.created_at)
            .order_by(RequestModel.created_at, RequestModel.request_id)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [RequestCredits(r.request_id, int(r.billable), int(r.reserved or 0), int(r.spent or 0)) for r in rows]

    @translated("look up cached results")
    async def any_cached(self, since: datetime) -> bool:
        """Whether any answer since `since` exists (a list checked against an empty cache asks nothing more)."""
        async with self._db.read() as conn:
            return await conn.scalar(select(ResultModel.id).where(_reusable(since)).limit(1)) is not None

    @translated("look up cached results")
    async def cached_keys(self, keys: Sequence[str], since: datetime) -> set[str]:
        """Which of `keys` (lower-cased addresses) have an answer the cache may reuse."""
        query = select(ResultModel.email).distinct().where(_reusable(since), ResultModel.email.in_(list(keys)))
        async with self._db.read() as conn:
            return set((await conn.scalars(query)).all())


def _held_and_spent() -> tuple[Any, Any]:
    held = func.sum(case((BatchModel.status.in_(_HELD_STATES), BatchModel.billable), else_=0))
    charged = func.coalesce(BatchModel.credits_used, BatchModel.billable)
    spent = func.sum(case((BatchModel.status.in_(_AT_BOUNCER), charged), else_=0))
    return held.label("reserved"), spent.label("spent")


async def spent_and_reserved(conn: AsyncConnection, request_id: str) -> tuple[int, int]:
    """The request's credits spent so far and still to spend."""
    query = select(*_held_and_spent()).where(BatchModel.request_id == request_id)
    row = (await conn.execute(query)).one()
    return int(row.spent or 0), int(row.reserved or 0)


async def settle_billable(conn: AsyncConnection, request: RequestInfo, batch_id: int, moved: int = 0) -> int | None:
    """After ingest stored a chunk in `batch_id` (and `moved` of its rows out, to earlier batches): cache answers
    and recount the batch; the batch id, or None when nothing of it is left to send. `record_billable` follows."""
    if request.cache_since is not None:
        moved += await answer_from_cache(conn, request.request_id, batch_id, request.cache_since)
    kept = await recount_batch(conn, batch_id) if moved else True
    return batch_id if kept else None


async def record_billable(
    conn: AsyncConnection, request: RequestInfo, values: Mapping[str, Any], *, check: bool
) -> None:
    """Set the request row's `values` (ingest's totals) and its billable count so far, summed over its batches, in
    one UPDATE (a round trip per chunk, not three); then, with `check` (the chunk kept a batch), ask the request's
    CreditCheck. Raises CreditsRefused (rolling the chunk back) when it refuses."""
    mine = RequestModel.request_id == request.request_id
    billable = select(func.coalesce(func.sum(BatchModel.billable), 0)).where(
        BatchModel.request_id == request.request_id
    )
    await conn.execute(update(RequestModel).where(mine).values(billable=billable.scalar_subquery(), **values))
    if request.credit_check is None or not check:
        return
    counted = int(await conn.scalar(select(RequestModel.billable).where(mine)) or 0)
    reserved = await reserved_by_others(conn, request.request_id, request.credit_check.checked_at)
    refusal = request.credit_check.refusal(counted, reserved)
    if refusal is not None:
        raise CreditsRefused(refusal)


async def answer_from_cache(conn: AsyncConnection, request_id: str, batch_id: int, since: datetime) -> int:
    """Copy the newest answer (since `since`, from another request) of each address of the unsent batch
    `batch_id`, as source `cache` with its first `verified_at`, and take those rows out of the batch; how many
    rows. The batch holds no key the request has an answer for yet (repeats.py moved those out)."""
    mine = (QueueModel.batch_id == batch_id) & (QueueModel.status == EmailState.BATCHED.value)
    keys = select(func.lower(QueueModel.email)).where(mine)
    newest = (
        select(func.max(ResultModel.id))
        .where(ResultModel.email.in_(keys), ResultModel.request_id != request_id, _reusable(since))
        .group_by(ResultModel.email)
    )
    copied = [getattr(ResultModel, column) for column in _CACHE_COPIED]
    source = select(
        literal(request_id, String).label("request_id"), *copied, literal(CACHE_SOURCE, String).label("source")
    ).where(ResultModel.id.in_(newest))
    columns = ["request_id", *_CACHE_COPIED, "source"]
    if not (await conn.execute(insert(ResultModel).from_select(columns, source))).rowcount:
        return 0
    cached = select(ResultModel.email).where(ResultModel.request_id == request_id, ResultModel.source == CACHE_SOURCE)
    answered = (
        update(QueueModel)
        .where(mine, func.lower(QueueModel.email).in_(cached))
        .values(status=EmailState.COMPLETED.value, batch_id=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int((await conn.execute(answered)).rowcount or 0)


def _reusable(since: datetime) -> Any:
    # Every answer, `unknown` included: the user asked not to pay twice within the period; --no-cache asks again.
    return ResultModel.verified_at >= since


async def recount_batch(conn: AsyncConnection, batch_id: int) -> bool:
    """Set the new batch's quantity (rows) and billable count (unique addresses) to what it now holds, or delete
    it when it holds nothing; whether it is kept."""
    query = select(func.count(), func.count(func.distinct(func.lower(QueueModel.email)))).where(
        QueueModel.batch_id == batch_id
    )
    rows, unique = (await conn.execute(query)).one()
    if not rows:
        await conn.execute(delete(BatchModel).where(BatchModel.id == batch_id))
        return False
    await conn.execute(update(BatchModel).where(BatchModel.id == batch_id).values(quantity=rows, billable=unique))
    return True


async def reserved_by_others(conn: AsyncConnection, request_id: str, checked_at: datetime) -> int:
    """Credits other requests hold: their batches not yet at Bouncer, and those sent since `checked_at` (which the
    balance read then did not yet show). Read under the reservation lock, held until the commit, so the next
    request's check sees this one: `conn` is a transaction of `Database.write(RESERVE_LOCK)`, which holds it on
    MariaDB, and it is taken here on PostgreSQL."""
    await take(conn, RESERVE_LOCK)
    held = or_(BatchModel.status.in_(_HELD_STATES), BatchModel.submitted_at >= checked_at)
    query = select(func.coalesce(func.sum(BatchModel.billable), 0)).where(BatchModel.request_id != request_id, held)
    return int(await conn.scalar(query) or 0)
