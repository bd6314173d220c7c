"""The shared Bouncer rate limiter: sliding-window budgets kept in the database, so every worker process agrees.

Each call to Bouncer first asks `RateLimiter.acquire(budgets, endpoint)` for a slot. The answer is a `Decision`:
go (a row was written to Bouncer_Rate_Limit for each budget) or wait N ms (nothing was written). It never sleeps,
so a stage that is told to wait re-enqueues itself with that delay instead of holding a worker slot or spending
a retry attempt. The Bouncer_Rate_Limit table is both the counter and the audit log; `cleanup` trims it.

Atomicity: count-then-insert must run one budget at a time across every process on every machine, or two
processes could both see 179 and both take the 180th slot. Each engine gets the cheapest lock that makes it so:

- PostgreSQL: `pg_advisory_xact_lock` per budget, taken first in a READ COMMITTED transaction. The lock is freed
  by the commit, after the rows became visible, so the next holder's count sees them.
- MariaDB/MySQL: `GET_LOCK` per budget (a named server lock, held past the commit and released right after it),
  with READ COMMITTED so the count reads the newest committed rows instead of an older snapshot.
- SQLite: the single database write lock. `make_engine` opens write transactions with BEGIN IMMEDIATE; a no-op
  UPDATE as the first statement takes the same lock on an engine that begins DEFERRED, before anything is read.

Locks are taken in sorted budget order so two multi-budget calls cannot deadlock.

When the call counts: Bouncer counts a request when it arrives, which is after our token was taken (the body is
built and sent in between). Were our rows kept at the token's time, a call that took long to arrive could still
count in Bouncer's window after it left ours, and a token taken the moment our window frees would be one too many
for Bouncer's (a 429). So once the answer is in, `answered(decision)` moves the call's rows to the answer's time,
which is never before Bouncer counted it: each of our windows then holds every call Bouncer's may hold. While the
call is under way its rows keep the token's time, which is before the call reaches Bouncer and so also counted.
Moving a row later only ever makes a check stricter, so it needs no lock.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy import Table, delete, false, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from bouncer_queue.config import Settings
from bouncer_queue.errors import ConfigError, StorageError
from bouncer_queue.storage.locks import NamedLock, is_mysql, session_locks, take
from bouncer_queue.storage.tables import Base
from bouncer_queue.storage.transactions import Database

log = logging.getLogger(__name__)

#: Every batch-endpoint call: create, status, download, finish, delete.
BATCH = "batch"
#: Batch creations, limited on their own on top of BATCH.
CREATE = "create"
#: Credit-balance checks.
CREDITS = "credits"

#: How long a MariaDB process waits for another one's budget lock before giving up (seconds).
MYSQL_LOCK_TIMEOUT_SECONDS = 10

_TABLE_NAME = "Bouncer_Rate_Limit"
_DIALECTS = frozenset({"sqlite", "postgresql", "mysql", "mariadb"})


@dataclass(frozen=True)
class Budget:
    """At most `max_requests` requests in any sliding window of `window_seconds`."""

    max_requests: int
    window_seconds: float

    def __post_init__(self) -> None:
        if self.max_requests < 1 or self.window_seconds <= 0:
            raise ValueError(f"a budget needs max_requests >= 1 and window_seconds > 0, got {self}")


@dataclass(frozen=True)
class Token:
    """The log rows one granted call wrote: its budgets, endpoint and time; `answered` moves them later."""

    budgets: tuple[str, ...]
    endpoint: str
    at: float


@dataclass(frozen=True)
class Decision:
    """The answer of `acquire`: go now (with the `token` to hand to `answered`), or wait `wait_ms`."""

    allowed: bool
    wait_ms: int = 0
    #: Not part of the answer's value: a grant equals GO whatever rows it wrote.
    token: Token | None = field(default=None, compare=False)


GO = Decision(allowed=True)


def budgets_from_settings(settings: Settings) -> dict[str, Budget]:
    """The three Bouncer budgets, all over the configured window (60 s by default)."""
    window = settings.rate_limit_window_seconds
    return {
        BATCH: Budget(settings.rate_limit_max, window),
        CREATE: Budget(settings.rate_limit_create_max, window),
        CREDITS: Budget(settings.rate_limit_credits_max, window),
    }


def ceil_ms(seconds: float) -> int:
    """Seconds until a slot frees, as whole ms rounded up (never 0, so a caller never spins without waiting)."""
    # Rounding to µs first keeps float noise (59.250000000001) from adding a millisecond.
    return max(1, math.ceil(round(seconds * 1000, 3)))


class RateLimiter:
    """Sliding-window budgets shared by every worker process through the Bouncer_Rate_Limit table."""

    def __init__(
        self,
        engine: AsyncEngine,
        budgets: Mapping[str, Budget],
        *,
        clock: Callable[[], float] = time.time,
        worker: str | None = None,
        retention_seconds: float = 3_600.0,
    ) -> None:
        if engine.dialect.name not in _DIALECTS:
            raise ConfigError(f"the rate limiter does not support the {engine.dialect.name} database")
        self._engine = engine
        self._budgets = dict(budgets)
        self._clock = clock
        self._worker = worker
        self._retention_seconds = retention_seconds
        self._table: Table = Base.metadata.tables[_TABLE_NAME]
        self._db = Database(engine)

    @property
    def budgets(self) -> Mapping[str, Budget]:
        return dict(self._budgets)

    async def acquire(self, budgets: Sequence[str], endpoint: str) -> Decision:
        """Take one slot in every budget named, all or nothing; or say how long until that is possible."""
        names = self._checked(budgets)
        async with self._db.guard("acquire a rate-limit slot"), self._locked(names) as conn:
            now = self._clock()
            waits = [await self._seconds_until_free(conn, name, now) for name in names]
            if any(waits):
                return Decision(allowed=False, wait_ms=ceil_ms(max(waits)))
            rows = [{"budget": n, "endpoint": endpoint, "requested_at": now, "worker": self._worker} for n in names]
            await conn.execute(insert(self._table), rows)
            return Decision(allowed=True, token=Token(tuple(names), endpoint, now))

    async def answered(self, decision: Decision) -> None:
        """The call granted by `decision` has its answer (or failed): count it from now on, not from its token
        (best effort: see below)."""
        token = decision.token
        if token is None:
            return
        query = update(self._table).where(*self._rows_of(token)).values(requested_at=max(self._clock(), token.at))
        # Never raises: callers await it in the `finally` of their Bouncer call, where an error would replace the
        # call's answer (a database stopping right then lost a created batch's id, and the paid batch was
        # dead-lettered). Left at the token's time, the rows count the call a little earlier than Bouncer does:
        # a 429 at worst, which defers.
        try:
            async with self._db.guard("record a call's answer in the rate-limit log"), self._db.write() as conn:
                await conn.execute(query)
        except StorageError as exc:
            log.warning(
                "a call's rate-limit rows keep their token's time: %s", exc, extra={"action": "answer_unrecorded"}
            )

    async def refund(self, decision: Decision) -> None:
        """The call granted by `decision` will not be made: give its slots back.

        A create job that took its token and then found every batch slot taken by another process's claim makes
        no call; left counted, its rows would hold a slot of the budget a whole window for nothing (in a burst of
        woken create jobs, a third of the creates' budget was spent that way). Removing the row of a call that
        was never sent can never let a window hold more calls than Bouncer allows, so it needs no lock."""
        token = decision.token
        if token is None:
            return
        async with self._db.guard("give back an unused rate-limit slot"), self._db.write() as conn:
            await conn.execute(delete(self._table).where(*self._rows_of(token)))

    async def peek(self, budgets: Sequence[str]) -> Decision:
        """Whether `acquire` would go now, taking nothing and no lock: a hint (another process may take the slot
        meanwhile) that lets a caller skip costly work it would do for nothing."""
        names = self._checked(budgets)
        async with self._db.guard("read rate-limit usage"), self._db.read() as conn:
            now = self._clock()
            waits = [await self._seconds_until_free(conn, name, now) for name in names]
        return Decision(allowed=False, wait_ms=ceil_ms(max(waits))) if any(waits) else GO

    async def utilization(self, budget: str) -> float:
        """The share of `budget` used in the current window: 0.0 (idle) to 1.0 (full)."""
        used, limit = (await self._usage(self._checked([budget])))[budget]
        return used / limit

    async def usage(self) -> dict[str, tuple[int, int]]:
        """(used, limit) of every budget in its current window."""
        return await self._usage(sorted(self._budgets))

    async def cleanup(self, older_than_seconds: float | None = None) -> int:
        """Delete log rows older than the retention (default: the limiter's); return how many went."""
        age = self._retention_seconds if older_than_seconds is None else older_than_seconds
        # Never delete a row some window still counts, whatever the caller asked for.
        age = max([age, *(b.window_seconds for b in self._budgets.values())])
        async with self._db.guard("clean up the rate-limit log"), self._db.write() as conn:
            result = await conn.execute(delete(self._table).where(self._table.c.requested_at < self._clock() - age))
            return result.rowcount

    # Internals

    def _rows_of(self, token: Token) -> tuple[ColumnElement[bool], ...]:
        """The log rows `token`'s grant wrote: one per budget, told apart from every other by endpoint, time and
        worker (this process takes its tokens one lock at a time, so no two of its grants share a time)."""
        t = self._table
        worker = t.c.worker.is_(None) if self._worker is None else t.c.worker == self._worker
        return t.c.budget.in_(token.budgets), t.c.endpoint == token.endpoint, t.c.requested_at == token.at, worker

    def _checked(self, budgets: Sequence[str]) -> list[str]:
        names = sorted(set(budgets))
        if not names:
            raise ValueError("acquire needs at least one budget")
        unknown = [n for n in names if n not in self._budgets]
        if unknown:
            raise ValueError(f"unknown rate-limit budget(s) {unknown}; configured: {sorted(self._budgets)}")
        return names

    async def _seconds_until_free(self, conn: AsyncConnection, name: str, now: float) -> float:
        """0 when `name` has a free slot at `now`; else the seconds until its window drops enough rows."""
        budget = self._budgets[name]
        t = self._table
        # The max_requests-th newest row in the window is the one that must leave before a slot frees (it is the
        # oldest when the window holds exactly max_requests; later if the budget was lowered meanwhile).
        blocker: float | None = await conn.scalar(
            select(t.c.requested_at)
            .where(t.c.budget == name, t.c.requested_at > now - budget.window_seconds)
            .order_by(t.c.requested_at.desc())
            .limit(1)
            .offset(budget.max_requests - 1)
        )
        if blocker is None:
            return 0.0
        return max(blocker + budget.window_seconds - now, 1e-3)

    async def _usage(self, names: Sequence[str]) -> dict[str, tuple[int, int]]:
        t = self._table
        found: dict[str, tuple[int, int]] = {}
        async with self._db.guard("read rate-limit usage"), self._db.read() as conn:
            now = self._clock()
            for name in names:
                budget = self._budgets[name]
                window = (t.c.budget == name, t.c.requested_at > now - budget.window_seconds)
                used = await conn.scalar(select(func.count()).select_from(t).where(*window))
                found[name] = (int(used or 0), budget.max_requests)
        return found

    @asynccontextmanager
    async def _locked(self, names: Sequence[str]) -> AsyncIterator[AsyncConnection]:
        """A transaction holding the lock of every budget in `names` (sorted); committed on a clean exit."""
        dialect = self._engine.dialect.name
        locks = [NamedLock(_lock_name(name), _lock_key(name)) for name in names]
        async with self._engine.connect() as conn:
            if dialect != "sqlite":
                conn = await conn.execution_options(isolation_level="READ COMMITTED")
            if is_mysql(conn):
                async with session_locks(conn, locks, MYSQL_LOCK_TIMEOUT_SECONDS), conn.begin():
                    yield conn
                return
            async with conn.begin():
                if dialect == "sqlite":
                    # A write first: it takes the SQLite write lock even if the engine began DEFERRED.
                    await conn.execute(update(self._table).where(false()).values(budget=self._table.c.budget))
                for lock in locks:
                    await take(conn, lock)
                yield conn


def _lock_key(budget: str) -> int:
    """A stable signed 64-bit advisory-lock key for `budget` (Python's hash() differs between processes)."""
    digest = hashlib.blake2b(f"bouncer_rate_limit:{budget}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _lock_name(budget: str) -> str:
    # MariaDB lock names are server-wide and at most 64 characters: hash the budget, keep a readable prefix.
    return "bouncer_rate_limit:" + hashlib.blake2b(budget.encode(), digest_size=16).hexdigest()
