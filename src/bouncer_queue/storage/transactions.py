"""How storage talks to one engine: read and write transactions, with database errors translated on the way out.

The repository's query groups (ingest.py, batches.py, claims.py, results.py, dead_letters.py, health.py) share
one `Database`, and each of their public methods runs as ONE transaction under `translated`, so a driver error
leaves as StorageError with the password masked (boundary.py). Reads are marked read-only, which lets SQLite open
them DEFERRED, without the write lock (db.py). The rate limiter reads and translates errors the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bouncer_queue.storage.boundary import translate_errors
from bouncer_queue.storage.db import READ_ONLY_OPTION, mask_url

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

    def write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction, committed on a clean exit."""
        return self.engine.begin()

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


def translated(operation: str) -> Callable[[_Method[Q, P, T]], _Method[Q, P, T]]:
    """Run a query-group method under `Database.guard(operation)`."""

    def decorate(method: _Method[Q, P, T]) -> _Method[Q, P, T]:
        @wraps(method)
        async def wrapper(self: Q, /, *args: P.args, **kwargs: P.kwargs) -> T:
            async with self._db.guard(operation):
                return await method(self, *args, **kwargs)

        return wrapper

    return decorate


def new_id(result: CursorResult[Any]) -> int:
    """The primary key of the row an insert just wrote."""
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the insert returned no primary key")
    return int(key[0])
