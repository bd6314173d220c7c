"""Database-wide named locks: what makes a check-then-write atomic across processes and machines, per engine.

- PostgreSQL: `pg_advisory_xact_lock(key)`, taken inside the transaction (`take`) and freed by its commit or
  rollback, or by a dropped connection: never leaked. READ COMMITTED gives each statement a fresh snapshot, so
  what follows the lock sees everything the previous holder committed.
- MariaDB: `GET_LOCK(name)`, a session lock (`session_locks`), taken BEFORE the transaction begins and released
  right after it ends (or by a dropped connection). Taken inside, it would be too late: REPEATABLE READ fixes a
  transaction's snapshot at its first read, which may come before the lock, and would then not show what the
  previous holder committed.
- SQLite: nothing to take: write transactions begin IMMEDIATE and hold the database's one write lock.

`Database.write(lock)` (transactions.py) holds a MariaDB lock around its transaction; the code inside calls
`take(conn, lock)` where the check begins, which takes the PostgreSQL lock there (and nothing elsewhere), so a
PostgreSQL transaction holds it only from the check to its commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

#: How long a MariaDB session waits for a lock another one holds before giving up (seconds).
MYSQL_LOCK_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class NamedLock:
    """One database-wide lock: `key` names it to pg_advisory_xact_lock (any bigint), `name` to GET_LOCK (at most
    64 characters, server-wide)."""

    name: str
    key: int


def is_mysql(bind: AsyncConnection | AsyncEngine) -> bool:
    return bind.dialect.name in {"mysql", "mariadb"}


async def take(conn: AsyncConnection, lock: NamedLock) -> None:
    """Take `lock` inside the transaction on PostgreSQL (until its end); elsewhere it is held already (MariaDB:
    `session_locks` around the transaction; SQLite: the write lock)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_advisory_xact_lock(lock.key)))


@asynccontextmanager
async def session_locks(
    conn: AsyncConnection, locks: Sequence[NamedLock], timeout: float = MYSQL_LOCK_TIMEOUT_SECONDS
) -> AsyncIterator[None]:
    """MariaDB: hold GET_LOCK of each of `locks`, in order, while the block runs (begin its transaction inside);
    TimeoutError when one is not granted within `timeout` seconds. Released even when the block fails, or the
    next session would wait out the timeout. Each GET_LOCK is committed at once: no snapshot starts before it."""
    taken: list[str] = []
    try:
        for lock in locks:
            got = await conn.scalar(select(func.get_lock(lock.name, timeout)))
            await conn.commit()
            if got != 1:
                raise TimeoutError(f"the database lock {lock.name!r} was not granted within {timeout:g} s")
            taken.append(lock.name)
        yield
    finally:
        for name in taken:
            await conn.scalar(select(func.release_lock(name)))
        await conn.commit()
