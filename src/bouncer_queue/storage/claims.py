"""Submission slots: a pending batch becomes submitting only while fewer than MAX_CONCURRENT_BATCHES are in flight.

The check and the update must be atomic across processes and machines, so they run under one database-wide lock,
the claim lock (locks.py: an advisory lock on PostgreSQL, GET_LOCK around the transaction on MariaDB, the write
lock on SQLite), so each claim sees every earlier one. Giving a slot back is in batches.py. A claim
also stores the digest of the batch's callback token (or clears it), so only this submission's callback matches.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from bouncer_queue.domain import BatchState
from bouncer_queue.storage.batches import batch_update, in_flight
from bouncer_queue.storage.locks import NamedLock, take
from bouncer_queue.storage.tables import BatchModel, utcnow
from bouncer_queue.storage.transactions import Queries, translated

#: The claim lock (locks.py): its key any number that fits in a bigint, distinct from the other locks'.
CLAIM_LOCK = NamedLock("bouncer_queue.claim_submission", 0x626F756E636572)


class ClaimResult(StrEnum):
    """The outcome of `Repository.try_claim_submission`."""

    CLAIMED = "claimed"  #: the batch is now submitting and holds a slot
    FULL = "full"  #: every slot is taken; try again when one frees
    NOT_PENDING = "not_pending"  #: the batch is missing or no longer pending (another worker has it)


class ClaimQueries(Queries):
    """Claims of submission slots under the engine's claim lock."""

    @translated("claim a submission slot")
    async def try_claim_submission(
        self, batch_id: int, max_in_flight: int, callback_token: str | None = None
    ) -> ClaimResult:
        async with self._db.write(CLAIM_LOCK) as conn:
            await take(conn, CLAIM_LOCK)
            return await _claim(conn, batch_id, max_in_flight, callback_token)


async def _claim(conn: AsyncConnection, batch_id: int, max_in_flight: int, callback_token: str | None) -> ClaimResult:
    status = await conn.scalar(select(BatchModel.status).where(BatchModel.id == batch_id))
    if status != BatchState.PENDING.value:
        return ClaimResult.NOT_PENDING
    if await in_flight(conn) >= max_in_flight:
        return ClaimResult.FULL
    query = (
        batch_update(batch_id, BatchState.PENDING)
        .values(
            status=BatchState.SUBMITTING.value,
            attempts=BatchModel.attempts + 1,
            updated_at=utcnow(),
            # Every claim replaces the token, so a callback meant for an earlier submission no longer matches.
            callback_token=callback_token,
        )
        .execution_options(synchronize_session=False)
    )
    updated = (await conn.execute(query)).rowcount
    return ClaimResult.CLAIMED if updated else ClaimResult.NOT_PENDING
