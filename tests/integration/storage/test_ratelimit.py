"""The shared rate limiter on real databases: go/wait semantics, and one budget held by several processes.

Every test runs on SQLite (a tmp file), PostgreSQL and MariaDB, each in a database of its own that the module
creates and drops (never the shared `test` database's data). Semantics tests use an injected clock; the
multi-process tests run real worker processes (ratelimit_worker.py) under a scaled window and assert the invariant
only: no window ever holds more grants than the limit. How much of the budget several processes manage to use
depends on the machine's load, so it is measured by bench/ratelimit_share.py, not asserted here.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bouncer_queue.errors import StorageError
from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.ratelimit import GO, Budget, Decision, RateLimiter
from bouncer_queue.storage.tables import Base

TABLE = Base.metadata.tables["Bouncer_Rate_Limit"]
T0 = 1_700_000_000.0
WORKER_SCRIPT = Path(__file__).with_name("ratelimit_worker.py")

BACKENDS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# Databases: one per backend for the module, emptied before each test.


async def _admin(server_url: str, statement: str) -> None:
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()


async def _create_table(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all, tables=[TABLE])
    finally:
        await engine.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('ratelimit') / 'ratelimit.db'}"
        asyncio.run(_create_table(url))
        yield url
        return
    server = request.getfixturevalue("postgres_url" if request.param == "postgresql" else "mysql_url")
    name = f"bq_ratelimit_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server, f"CREATE DATABASE {name}"))
    try:
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        asyncio.run(_create_table(url))
        yield url
    finally:
        force = " WITH (FORCE)" if request.param == "postgresql" else ""
        asyncio.run(_admin(server, f"DROP DATABASE IF EXISTS {name}{force}"))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(delete(TABLE))
    yield engine
    await engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def _log(engine: AsyncEngine) -> list[tuple[str, str, float, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(TABLE.c.budget, TABLE.c.endpoint, TABLE.c.requested_at, TABLE.c.worker).order_by(TABLE.c.id)
        )
        return [tuple(row) for row in rows]


# Go / wait semantics, with the clock in the test's hands.


async def test_a_full_budget_says_exactly_when_its_oldest_request_leaves(engine: AsyncEngine, clock: FakeClock):
    limiter = RateLimiter(engine, {"batch": Budget(3, 60)}, clock=clock)
    for _ in range(3):
        assert await limiter.acquire(["batch"], "status") == GO
        clock.advance(10)

    assert await limiter.acquire(["batch"], "status") == Decision(allowed=False, wait_ms=30_000)

    clock.advance(29.75)
    assert await limiter.acquire(["batch"], "status") == Decision(allowed=False, wait_ms=250)
    clock.advance(0.25)  # T0 + 60: the request of T0 has left the window (T0 + 60 - 60, T0 + 60]
    assert await limiter.acquire(["batch"], "status") == GO
    # Full again: the next to leave is the one taken at T0 + 10.
    assert await limiter.acquire(["batch"], "status") == Decision(allowed=False, wait_ms=10_000)


async def test_a_refusal_writes_nothing_and_a_go_logs_endpoint_and_worker(engine: AsyncEngine, clock: FakeClock):
    limiter = RateLimiter(engine, {"batch": Budget(1, 60)}, clock=clock, worker="host-1:42")

    assert await limiter.acquire(["batch"], "download") == GO
    assert not (await limiter.acquire(["batch"], "download")).allowed

    assert await _log(engine) == [("batch", "download", T0, "host-1:42")]


async def test_a_call_counts_from_its_answer_so_no_window_of_bouncers_holds_more(engine: AsyncEngine, clock: FakeClock):
    # Bouncer counts a call when it arrives, after our token: the call's rows move to its answer's time, so the
    # next token waits a window from the answer, never only from the token (which would allow one call too many
    # in Bouncer's window when a call took long to arrive).
    limiter = RateLimiter(engine, {"batch": Budget(1, 60), "create": Budget(1, 60)}, clock=clock, worker="w")
    decision = await limiter.acquire(["batch", "create"], "create")
    clock.advance(3)  # the call is under way; it holds its budgets from the token's time meanwhile
    assert await limiter.acquire(["batch"], "status") == Decision(allowed=False, wait_ms=57_000)
    await limiter.answered(decision)
    assert await _log(engine) == [("batch", "create", T0 + 3, "w"), ("create", "create", T0 + 3, "w")]
    clock.advance(57)  # a window after the token, but not after the answer
    assert await limiter.acquire(["batch"], "status") == Decision(allowed=False, wait_ms=3_000)
    clock.advance(3)
    assert await limiter.acquire(["batch"], "status") == GO
    await limiter.answered(Decision(allowed=False, wait_ms=5))  # a refusal wrote nothing: nothing to move


async def test_a_refunded_grant_gives_its_slots_back_and_only_its_own(engine: AsyncEngine, clock: FakeClock):
    budgets = {"batch": Budget(2, 60), "create": Budget(1, 60)}
    ours = RateLimiter(engine, budgets, clock=clock, worker="host-1:1")
    theirs = RateLimiter(engine, budgets, clock=clock, worker="host-2:2")
    assert await theirs.acquire(["batch"], "create") == GO  # the same time and endpoint, another process
    decision = await ours.acquire(["batch", "create"], "create")
    assert not (await ours.acquire(["batch", "create"], "create")).allowed

    await ours.refund(decision)  # the call was never sent
    assert await _log(engine) == [("batch", "create", T0, "host-2:2")]
    assert await ours.acquire(["batch", "create"], "create") == GO
    await ours.refund(Decision(allowed=False, wait_ms=5))  # a refusal wrote nothing: nothing to give back


async def test_peek_tells_what_acquire_would_answer_and_takes_nothing(engine: AsyncEngine, clock: FakeClock):
    limiter = RateLimiter(engine, {"batch": Budget(1, 60), "create": Budget(1, 30)}, clock=clock)

    assert await limiter.peek(["batch", "create"]) == GO
    assert await _log(engine) == []
    assert await limiter.acquire(["batch"], "status") == GO
    clock.advance(20)
    assert await limiter.peek(["batch", "create"]) == Decision(allowed=False, wait_ms=40_000)
    assert await limiter.usage() == {"batch": (1, 1), "create": (0, 1)}


async def test_several_budgets_are_taken_all_or_nothing(engine: AsyncEngine, clock: FakeClock):
    limiter = RateLimiter(engine, {"batch": Budget(3, 60), "create": Budget(1, 30)}, clock=clock)
    assert await limiter.acquire(["batch", "create"], "create") == GO

    # create is full: batch must not lose a slot for a refused creation.
    assert await limiter.acquire(["create", "batch"], "create") == Decision(allowed=False, wait_ms=30_000)
    assert await limiter.usage() == {"batch": (1, 3), "create": (1, 1)}

    assert await limiter.acquire(["batch"], "status") == GO
    assert await limiter.acquire(["batch"], "status") == GO
    clock.advance(20)
    # Both full: wait for the later of the two (batch frees at T0 + 60, create at T0 + 30).
    assert await limiter.acquire(["batch", "create"], "create") == Decision(allowed=False, wait_ms=40_000)
    assert await limiter.usage() == {"batch": (3, 3), "create": (1, 1)}


async def test_utilization_follows_the_sliding_window(engine: AsyncEngine, clock: FakeClock):
    limiter = RateLimiter(engine, {"batch": Budget(4, 60), "credits": Budget(10, 60)}, clock=clock)
    for _ in range(3):
        await limiter.acquire(["batch"], "status")
        clock.advance(1)

    assert await limiter.utilization("batch") == 0.75
    assert await limiter.utilization("credits") == 0.0
    clock.advance(57.5)  # T0 + 60.5: the request of T0 has left, those of T0 + 1 and T0 + 2 are inside
    assert await limiter.utilization("batch") == 0.5
    clock.advance(10)
    assert await limiter.usage() == {"batch": (0, 4), "credits": (0, 10)}


async def test_cleanup_deletes_only_rows_past_retention_and_never_inside_a_window(
    engine: AsyncEngine, clock: FakeClock
):
    limiter = RateLimiter(engine, {"batch": Budget(100, 60)}, clock=clock, retention_seconds=3_600)
    for offset in (0, 100, 3_600):
        clock.now = T0 + offset
        await limiter.acquire(["batch"], "status")

    clock.now = T0 + 3_650
    assert await limiter.cleanup() == 1  # T0 only
    # Asking for 0 s still keeps what the 60 s window counts (T0 + 3_600).
    assert await limiter.cleanup(older_than_seconds=0) == 1
    assert [row[2] for row in await _log(engine)] == [T0 + 3_600]
    assert await limiter.utilization("batch") == 0.01


async def test_database_errors_become_storage_error(engine: AsyncEngine, clock: FakeClock):
    async with engine.begin() as conn:
        await conn.run_sync(TABLE.drop)
    try:
        with pytest.raises(StorageError, match="acquire a rate-limit slot"):
            await RateLimiter(engine, {"batch": Budget(1, 60)}, clock=clock).acquire(["batch"], "status")
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(TABLE.create)


async def test_recording_an_answer_never_raises_it_leaves_the_rows_at_the_token_s_time(
    engine: AsyncEngine, clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    # Callers await `answered` in the `finally` of their Bouncer call: an error would replace the call's answer.
    limiter = RateLimiter(engine, {"batch": Budget(1, 60)}, clock=clock)
    decision = await limiter.acquire(["batch"], "create")
    async with engine.begin() as conn:
        await conn.run_sync(TABLE.drop)
    try:
        await limiter.answered(decision)
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(TABLE.create)
    assert any("keep their token's time" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


async def test_an_unreachable_database_is_a_storage_error_without_the_password():
    engine = make_engine("postgresql://bouncer:s3cret-pw@127.0.0.1:1/nowhere")
    try:
        with pytest.raises(StorageError) as caught:
            await RateLimiter(engine, {"batch": Budget(1, 60)}).acquire(["batch"], "status")
    finally:
        await engine.dispose()
    assert "s3cret-pw" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


# Several processes, one budget: never over the limit.

LIMIT = 30
WINDOW = 4.0
DURATION = 9.0
PROCESSES = 3


def _run_workers(url: str, *, plain_engine: bool = False) -> dict[str, dict[str, int]]:
    env = {**os.environ, "BQ_RATELIMIT_URL": url, "BQ_RATELIMIT_PLAIN_ENGINE": "1" if plain_engine else "0"}
    args = [str(LIMIT), str(WINDOW), str(DURATION)]
    procs = {
        f"p{i}": subprocess.Popen(
            [sys.executable, str(WORKER_SCRIPT), f"p{i}", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(PROCESSES)
    }
    try:
        for name, proc in procs.items():
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", (
                f"{name} failed to start: {proc.stderr.read() if proc.stderr else ''}"
            )
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = {name: proc.communicate(timeout=DURATION + 30) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for name, (_, err) in results.items():
        assert procs[name].returncode == 0, f"{name} failed: {err}"
    return {name: json.loads(out.strip().splitlines()[-1]) for name, (out, _) in results.items()}


def _max_in_any_window(times: list[float], window: float) -> int:
    """The most rows any half-open window (s - window, s] holds; it peaks at a window ending on a row."""
    return max(bisect.bisect_right(times, s) - bisect.bisect_right(times, s - window) for s in times)


def test_processes_share_one_budget_without_overrunning_it(database_url: str):
    _assert_shared_budget(database_url)


def test_processes_share_one_budget_on_a_sqlite_engine_that_begins_deferred(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}"
    asyncio.run(_create_table(url))
    _assert_shared_budget(url, plain_engine=True)


def _assert_shared_budget(url: str, *, plain_engine: bool = False) -> None:
    asyncio.run(_empty(url))
    reported = _run_workers(url, plain_engine=plain_engine)

    log = asyncio.run(_stored_grants(url))
    times = sorted(t for t, _ in log)
    per_worker = Counter(worker for _, worker in log)
    assert per_worker == Counter({name: counts["allowed"] for name, counts in reported.items()})
    assert sum(1 for n in per_worker.values() if n > 0) >= 2, f"not a contest: {per_worker}"
    # A window holding LIMIT + 1 grants would mean two processes both took the last slot. The µs of slack is
    # float rounding in `now - window`, not a timing allowance.
    assert _max_in_any_window(times, WINDOW - 1e-6) <= LIMIT


async def _empty(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(delete(TABLE))
    finally:
        await engine.dispose()


async def _stored_grants(url: str) -> list[tuple[float, str]]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(TABLE.c.requested_at, TABLE.c.worker).where(TABLE.c.budget == "batch"))
            return [(row.requested_at, row.worker) for row in rows]
    finally:
        await engine.dispose()
