"""Submission slots: a pending batch becomes submitting only while fewer than MAX_CONCURRENT_BATCHES are in flight.

The check and the update must be atomic across processes and machines, so they run under one database-wide lock.
PostgreSQL: a transaction-scoped advisory lock (released by commit or a dropped connection, never leaked).
SQLite: BEGIN IMMEDIATE already holds the single write lock. MariaDB: GET_LOCK, a named server lock
(session-scoped, so released explicitly and by a dropped connection); the work runs in a transaction started
after the lock is held, so its snapshot sees every earlier claim. Giving a slot back is in batches.py. A claim
also stores the digest of the batch's callback token (or clears it), so only this submission's callback matches.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from bouncer_queue.domain import BatchState
from bouncer_queue.storage.batches import batch_update, in_flight
from bouncer_queue.storage.tables import BatchModel, utcnow
from bouncer_queue.storage.transactions import Queries, translated

#: Any number that fits in a bigint identifies the claim lock (pg_advisory_xact_lock / GET_LOCK name).
CLAIM_LOCK_KEY = 0x626F756E636572
CLAIM_LOCK_NAME = "bouncer_queue.claim_submission"
CLAIM_LOCK_TIMEOUT_SECONDS = 30


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
        if self._db.engine.dialect.name == "mysql":
            return await self._claim_mysql(batch_id, max_in_flight, callback_token)
        async with self._db.write() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK_KEY})
            return await _claim(conn, batch_id, max_in_flight, callback_token)

    async def _claim_mysql(self, batch_id: int, max_in_flight: int, callback_token: str | None) -> ClaimResult:
        async with self._db.engine.connect() as conn:
            got = await conn.scalar(
                text("SELECT GET_LOCK(:name, :timeout)"),
                {"name": CLAIM_LOCK_NAME, "timeout": CLAIM_LOCK_TIMEOUT_SECONDS},
            )
            await conn.commit()
            if got != 1:
                raise TimeoutError(f"claim lock not granted within {CLAIM_LOCK_TIMEOUT_SECONDS} s")
            try:
                async with conn.begin():
                    return await _claim(conn, batch_id, max_in_flight, callback_token)
            finally:
                await conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": CLAIM_LOCK_NAME})
                await conn.commit()


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
