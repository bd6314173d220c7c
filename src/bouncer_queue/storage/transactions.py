"""How storage talks to one engine: read and write transactions, with database errors translated on the way out.

The repository's query groups (ingest.py, batches.py, claims.py, results.py, dead_letters.py, health.py) share
one `Database`, and each of their public methods runs as ONE transaction under `translated`, so a driver error
leaves as StorageError with the password masked (boundary.py). Reads are marked read-only, which lets SQLite open
them DEFERRED, without the write lock (db.py). The rate limiter reads and translates errors the same way.

A transaction the engine rolled back as a deadlock or serialization failure is run again here, up to
CONFLICT_ATTEMPTS times with a short random pause, so such a collision never reaches the pipeline as a failed
job. Only a method that consumes a caller's stream (ingest) opts out, since it cannot be replayed.

A few writes record what Bouncer did and exist nowhere else (the id of a batch it just created and charged,
the proof that a create never reached it). Marked `must_land`, they wait out a database that does not answer,
for up to MUST_LAND_PATIENCE_SECONDS, instead of failing and leaving the batch `submitting` for good.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bouncer_queue.storage.boundary import DRIVER_ERRORS, is_conflict, is_unreachable, translate_errors
from bouncer_queue.storage.db import READ_ONLY_OPTION, mask_url
from bouncer_queue.storage.locks import NamedLock, is_mysql, session_locks

log = logging.getLogger(__name__)

#: How many times one transaction runs before a deadlock or serialization failure is reported.
CONFLICT_ATTEMPTS = 6
#: The first pause between runs; each next one may be twice as long (random, so colliding writers part).
CONFLICT_BACKOFF_SECONDS = 0.05

#: How long a must-land write waits for a database that does not answer, and its longest pause between tries.
MUST_LAND_PATIENCE_SECONDS = 600.0
MUST_LAND_MAX_PAUSE_SECONDS = 10.0

P = ParamSpec("P")
T = TypeVar("T")
Q = TypeVar("Q", bound="Queries")


class Database:
    """One engine's transactions and error translation; safe to share between tasks of one process."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._masked_url = mask_url(engine.url)
        self._password = engine.url.password

    def guard(self, operation: str) -> AbstractAsyncContextManager[None]:
        """Errors raised inside become StorageError naming `operation` and the masked URL."""
        return translate_errors(self._masked_url, operation, self._password)

    def write(self, lock: NamedLock | None = None) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction, committed on a clean exit. With `lock`, MariaDB holds it from before the
        transaction begins until after it ends; the code inside calls `locks.take(conn, lock)` where its check
        begins, which takes it there on PostgreSQL (locks.py)."""
        if lock is None or not is_mysql(self.engine):
            return self.engine.begin()
        return self._write_in_session_lock(lock)

    @asynccontextmanager
    async def _write_in_session_lock(self, lock: NamedLock) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn, session_locks(conn, [lock]), conn.begin():
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction."""
        async with self.engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY_OPTION: True})
            async with conn.begin():
                yield conn


class Queries:
    """The base of every query group: the Database they all share."""

    def __init__(self, db: Database) -> None:
        self._db = db


_Method = Callable[Concatenate[Q, P], Coroutine[Any, Any, T]]


def translated(
    operation: str, *, replayable: bool = True, must_land: bool = False
) -> Callable[[_Method[Q, P, T]], _Method[Q, P, T]]:
    """Run a query-group method under `Database.guard(operation)`: again after a deadlock when `replayable`,
    and, when `must_land`, again until the database answers (see the module docstring)."""

    def decorate(method: _Method[Q, P, T]) -> _Method[Q, P, T]:
        @wraps(method)
        async def wrapper(self: Q, /, *args: P.args, **kwargs: P.kwargs) -> T:
            def transaction() -> Awaitable[T]:
                return method(self, *args, **kwargs)

            def replayed() -> Awaitable[T]:
                return run_again_on_conflict(transaction, operation)

            async with self._db.guard(operation):
                if not replayable:
                    return await transaction()
                return await (wait_for_database(replayed, operation) if must_land else replayed())

        return wrapper

    return decorate


async def wait_for_database(transaction: Callable[[], Awaitable[T]], operation: str) -> T:
    """Await `transaction()`, again with growing pauses while the database does not answer, for up to
    MUST_LAND_PATIENCE_SECONDS; then its error goes up."""
    deadline = time.monotonic() + MUST_LAND_PATIENCE_SECONDS
    pause = 0.5
    while True:
        try:
            return await transaction()
        except DRIVER_ERRORS as exc:
            if not is_unreachable(exc) or time.monotonic() + pause > deadline:
                raise
            log.warning(
                "%s: the database does not answer; trying again in %g s", operation, pause, extra={"action": "db_wait"}
            )
        await asyncio.sleep(pause)
        pause = min(pause * 2, MUST_LAND_MAX_PAUSE_SECONDS)


async def run_again_on_conflict(transaction: Callable[[], Awaitable[T]], operation: str) -> T:
    """Await `transaction()`, running it again while the engine rolls it back as a deadlock or serialization
    failure (at most CONFLICT_ATTEMPTS runs); any other error, or the last conflict, goes up unchanged."""
    for attempt in range(1, CONFLICT_ATTEMPTS):
        try:
            return await transaction()
        except DRIVER_ERRORS as exc:
            if not is_conflict(exc):
                raise
            log.info("%s: conflict, running it again (%d)", operation, attempt, extra={"action": "db_retry"})
        await asyncio.sleep(random.uniform(0, CONFLICT_BACKOFF_SECONDS * 2**attempt))
    return await transaction()


def new_id(result: CursorResult[Any]) -> int:
    """The primary key of the row an insert just wrote."""
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the insert returned no primary key")
    return int(key[0])
