"""Helpers of the pipeline acceptance tests: lists, a recording simulator, bounded waits, ledger checks, CLI runs.

The tests drive the real system (bullmq on the test Redis under a prefix of their own, a real database, the
simulator on a loopback port) and judge it only by what it leaves behind: the ledger, the simulator's log and
the queues. Nothing here measures time; waits are bounds that fail a test which hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from bullmq import Queue
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bouncer_queue.config import Settings
from bouncer_queue.interfaces.runner import running_workers
from bouncer_queue.queueing.connection import target_from_url
from bouncer_queue.service import QueueManager
from bouncer_queue.simulator import SimulatorConfig, SimulatorServer, fingerprint
from bouncer_queue.simulator.results import expected_result
from bouncer_queue.simulator.state import SimulatorState
from bouncer_queue.storage import migrate
from bouncer_queue.storage.db import make_engine

API_KEY = "acceptance-key"
SEED = "bouncer-simulator"
CLI = Path(sys.executable).with_name("bouncer-queue")
BATCH_PATH = "/v1.1/email/verify/batch"

# No special-use name (.test, .local, ...): the syntax pre-filter would answer those locally, never sending them.
_DOMAINS = ("example.com", "gmail.com", "acme.example", "mailinator.com", "dead-domain.example", "corp.example")


def make_emails(count: int, tag: str = "user") -> list[str]:
    """`count` distinct, lower-case, valid addresses over a few domains (free, disposable and dead ones too)."""
    return [f"{tag}.{i}@{_DOMAINS[i % len(_DOMAINS)]}" for i in range(count)]


def write_csv(path: Path, emails: Iterable[str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name"])
        writer.writerows([email, f"n{i}"] for i, email in enumerate(emails))
    return path


class RecordingState(SimulatorState):
    """The simulator's state, also noting each API request when it arrives and each created batch's addresses.

    The simulator's own request log is written after the answer is sent; arrival times are what Bouncer's
    rate limits count, so the window checks use these.
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        super().__init__(config)
        self.arrivals: list[tuple[float, str]] = []
        self.created: list[list[str]] = []

    def admit(self, key: str, group: str) -> None:
        self.arrivals.append((self.clock(), group))
        super().admit(key, group)

    def create_batch(self, key: str, entries: Sequence[tuple[str, str | None]], callback: str | None) -> dict[str, Any]:
        answer = super().create_batch(key, entries, callback)
        self.created.append([email for email, _ in entries])
        return answer


def recording_simulator(config: SimulatorConfig) -> SimulatorServer:
    """A SimulatorServer (not yet started) whose state is a RecordingState."""
    server = SimulatorServer(config)
    server.state = RecordingState(config)
    return server


@asynccontextmanager
async def running_simulator(config: SimulatorConfig) -> AsyncIterator[SimulatorServer]:
    """A recording simulator on a free port for the block (started and stopped off the event loop)."""
    server = recording_simulator(config)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


def recorded(server: SimulatorServer) -> RecordingState:
    state = server.state
    assert isinstance(state, RecordingState)
    return state


def create_calls(server: SimulatorServer) -> list[int]:
    """HTTP statuses of every batch-create call the simulator answered, in order."""
    return [r["status"] for r in server.state.requests if r["method"] == "POST" and r["path"] == BATCH_PATH]


def busiest_window(times: Iterable[float], window: float) -> int:
    """The most requests that fall in any half-open interval [t, t + window)."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, *, timeout: float = 60.0, interval: float = 0.2
) -> None:
    """Poll `check` until it holds; fail naming `what` after `timeout` seconds (a bound, not a measurement)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {timeout:g} s: {what}")
        await asyncio.sleep(interval)


async def sql(url: str, statement: str, **params: Any) -> list[Any]:
    """Run one statement on the test database (its own short-lived engine); the rows, if any."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


async def assert_results_match_simulator(url: str, request_id: str, count: int) -> None:
    """Every address of the request has exactly one result, and it is the one the simulator promises."""
    rows = await sql(
        url,
        'SELECT q.email, r.status, r.reason, (SELECT COUNT(*) FROM "Bouncer_Results" r2 '
        " WHERE r2.request_id = q.request_id AND r2.email = q.email) AS n "
        'FROM "Bouncer_Queue" q LEFT JOIN "Bouncer_Results" r ON r.request_id = q.request_id AND r.email = q.email '
        "WHERE q.request_id = :rid",
        rid=request_id,
    )
    assert len(rows) == count
    assert {row.n for row in rows} == {1}
    wrong = [
        (row.email, row.status, row.reason)
        for row in rows
        if (row.status, row.reason) != _expected(row.email)
    ]  # fmt: skip
    assert wrong == [], f"{len(wrong)} results differ from the simulator's, e.g. {wrong[:3]}"


def _expected(email: str) -> tuple[str, str]:
    result = expected_result(email, SEED)
    return result["status"], result["reason"]


async def dead_letters(url: str) -> list[Any]:
    return await sql(
        url, 'SELECT id, queue, job_name, error_class, attempts, batch_id FROM "Bouncer_Dead_Letter_Queue" ORDER BY id'
    )


async def batch_states(url: str) -> dict[int, str]:
    return {row.id: row.status for row in await sql(url, 'SELECT id, status FROM "Bouncer_Batches"')}


async def delete_prefix_keys(redis_url: str, prefix: str) -> int:
    """Delete every Redis key under `prefix` (SCAN + DEL), and nothing else; how many were deleted."""
    client = aioredis.from_url(redis_url)
    deleted = 0
    try:
        pattern = prefix.replace("[", "\\[").replace("]", "\\]") + "*"
        async for key in client.scan_iter(match=pattern, count=500):
            deleted += int(await client.delete(key))
    finally:
        await client.aclose()
    return deleted


def cli_env(values: Mapping[str, object]) -> dict[str, str]:
    """The environment of a `bouncer-queue` subprocess: ours, plus the test's settings as variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOUNCER_", "QUEUE_", "DATABASE_", "REDIS_"))}
    env.update({key: str(value) for key, value in values.items()})
    return env


def run_cli(args: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float = 120) -> str:
    """Run one `bouncer-queue` command to completion; its stdout, after asserting it exited 0."""
    return run_cli_output(args, env, cwd, timeout).stdout


def run_cli_output(
    args: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float = 120, *, exit_code: int = 0
) -> subprocess.CompletedProcess[str]:
    """Run one `bouncer-queue` command to completion, asserting its exit code; its stdout and stderr."""
    done = subprocess.run(
        [str(CLI), *args], env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == exit_code, (
        f"bouncer-queue {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    )
    return done


class WorkerProcess:
    """`bouncer-queue workers` as a subprocess, its output in a file (a pipe nobody reads could fill up)."""

    def __init__(self, env: Mapping[str, str], cwd: Path, name: str) -> None:
        self.log_path = cwd / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [str(CLI), "workers"], env=dict(env), cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, then wait for the exit (bounded); the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait(timeout=30)
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]


@asynccontextmanager
async def postgres_database(base_url: str) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database beside `test` (nothing else on the server is touched); dropped after."""
    name = f"bq_acc_{uuid.uuid4().hex[:12]}"
    await _autocommit(base_url, f"CREATE DATABASE {name}")
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        await _autocommit(base_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def _autocommit(base_url: str, statement: str) -> None:
    engine = make_engine(base_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


class System:
    """An in-process system for one test: a migrated SQLite file, the test's Redis prefix, simulators on ports.

    `settings()` scales every knob down (short windows, fast polls, small batches) so a test takes seconds;
    `pipeline()` opens a QueueManager and, unless told otherwise, runs every worker in a task of this process.
    Closing stops the simulators and deletes the prefix's keys, so nothing is left in the shared Redis.
    """

    def __init__(self, redis_url: str, prefix: str, tmp_path: Path) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.tmp_path = tmp_path
        self.database_url = f"sqlite+aiosqlite:///{tmp_path / 'bouncer-queue.db'}"
        self._servers = AsyncExitStack()

    async def __aenter__(self) -> System:
        await migrate.upgrade(self.database_url)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._servers.aclose()
        await delete_prefix_keys(self.redis_url, self.prefix)

    async def simulator(self, **config: Any) -> SimulatorServer:
        """A started simulator accepting API_KEY only; `config` overrides SimulatorConfig fields."""
        values: dict[str, Any] = {"api_keys": (API_KEY,), "speed": 5_000.0, "queue_delay_seconds": 0.1}
        return await self._servers.enter_async_context(running_simulator(SimulatorConfig(**(values | config))))

    def cli_env(self, base_url: str, **extra: object) -> dict[str, str]:
        """The environment of a `bouncer-queue` command run against this system and the simulator at `base_url`
        (the same database, Redis prefix and state directory as `settings`); `extra` adds variables."""
        return cli_env(
            {
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "QUEUE_PREFIX": self.prefix,
                "BOUNCER_API_KEY": API_KEY,
                "BOUNCER_API_BASE_URL": base_url,
                "BOUNCER_QUEUE_STATE_DIR": self.tmp_path / "state",
                **extra,
            }
        )

    def settings(self, base_url: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "bouncer_api_key": API_KEY,
            "bouncer_api_base_url": base_url,
            "redis_url": self.redis_url,
            "queue_prefix": self.prefix,
            "database_url": self.database_url,
            "state_dir": self.tmp_path / "state",
            "batch_size": 20,
            "rate_limit_window_seconds": 6,
            "rate_limit_max": 200,
            "rate_limit_create_max": 100,
            "rate_limit_credits_max": 20,
            "queue_limit_duration_ms": 6_000,
            "email_verification_limit": 0,
            "batch_status_limit": 0,
            "batch_download_limit": 0,
            "poll_interval_seconds": 0.3,
            "health_check_interval_seconds": 3_600,
            "cleanup_interval_seconds": 3_600,
            "job_attempts": 3,
            "job_backoff_ms": 100,
            "shutdown_grace_seconds": 10,
        }
        return Settings(**(values | overrides))

    @asynccontextmanager
    async def pipeline(self, settings: Settings, *, workers: bool = True) -> AsyncIterator[QueueManager]:
        async with QueueManager(settings) as manager:
            if not workers:
                yield manager
                return
            async with running_workers(manager):
                yield manager

    async def job(self, queue: str, job_id: str) -> Any:
        """The bullmq job `job_id` of `queue` under the test's prefix (None when there is none)."""
        bull = Queue(queue, {"connection": target_from_url(self.redis_url).bullmq_connection(), "prefix": self.prefix})
        try:
            return await bull.getJob(job_id)
        finally:
            await bull.close()


async def wait_until_done(manager: QueueManager, request_id: str, timeout: float = 60.0) -> None:
    async def done() -> bool:
        return (await manager.request_progress(request_id)).done

    await eventually(done, f"request {request_id} done", timeout=timeout)


async def emails_finished(url: str, request_id: str) -> int:
    """How many addresses of the request have an outcome (a result, or given up on)."""
    [(count,)] = await sql(
        url,
        "SELECT COUNT(*) FROM \"Bouncer_Queue\" WHERE request_id = :rid AND status IN ('completed', 'failed', 'dead')",
        rid=request_id,
    )
    return int(count)


def worker_env(
    *, database_url: str, redis_url: str, prefix: str, base_url: str, state_dir: Path, **settings: object
) -> dict[str, str]:
    """Environment of `bouncer-queue` subprocesses on the test's database, Redis prefix and simulator."""
    values: dict[str, object] = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "QUEUE_PREFIX": prefix,
        "BOUNCER_API_BASE_URL": base_url,
        "BOUNCER_API_KEY": API_KEY,
        "BOUNCER_QUEUE_STATE_DIR": state_dir,
        "LOG_JSON": "true",
    }
    return cli_env(values | {key.upper(): value for key, value in settings.items()})


async def rate_limit_slots(url: str) -> dict[str, list[float]]:
    """When the shared limiter granted each slot, by budget (from its audit table, Bouncer_Rate_Limit)."""
    slots: dict[str, list[float]] = {}
    for row in await sql(url, 'SELECT budget, requested_at FROM "Bouncer_Rate_Limit"'):
        slots.setdefault(row.budget, []).append(float(row.requested_at))
    return slots


async def simulator_state(server: SimulatorServer) -> dict[str, Any]:
    """The simulator's own account of itself, over HTTP (/__simulator/state): batches, credits per key."""
    async with httpx.AsyncClient(base_url=server.root_url) as http:
        answer = await http.get("/__simulator/state")
    answer.raise_for_status()
    state: dict[str, Any] = answer.json()
    return state


async def assert_exactly_once(url: str, server: SimulatorServer, addresses: Iterable[str], credits: int) -> None:
    """The three promises of issue 8, judged from the ledger and the simulator's own state: every unique address
    (lower-cased) has exactly one result; the batches created at the simulator are exactly those in the ledger;
    the credits charged to API_KEY equal the unique addresses sent (`credits` is what the account started with)."""
    unique = sorted({a.strip().lower() for a in addresses})
    results = await sql(url, 'SELECT email FROM "Bouncer_Results" ORDER BY email')
    assert [row.email for row in results] == unique, f"{len(results)} results for {len(unique)} addresses"
    state = await simulator_state(server)
    created = sorted(batch["id"] for batch in state["batches"])
    ledger = await sql(url, 'SELECT bouncer_batch_id FROM "Bouncer_Batches" WHERE bouncer_batch_id IS NOT NULL')
    assert created == sorted(row.bouncer_batch_id for row in ledger)
    assert credits - state["credits"][fingerprint(API_KEY)] == len(unique)


def run_cli_status(args: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float = 120) -> tuple[int, str]:
    """Run one `bouncer-queue` command to completion; (exit code, stdout and stderr)."""
    done = subprocess.run(
        [str(CLI), *args], env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    return done.returncode, done.stdout + done.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """A PostgreSQL cluster of the test's own, which it may stop and start (the shared server is never touched).

    initdb refuses root, so the cluster belongs to the `postgres` OS user and runs on a free port, with its data
    and socket in a temporary directory removed on `destroy()`.
    """

    def __init__(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not bins:
            pytest.fail("no PostgreSQL binaries under /usr/lib/postgresql")
        self._bin = bins[-1].parent
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="bq-pg-"))
        shutil.chown(self._dir, "postgres", "postgres")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres("initdb", "-D", str(self._dir / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _as_postgres(self, tool: str, *args: str) -> None:
        command = ["runuser", "-u", "postgres", "--", str(self._bin / tool), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{tool} failed: {done.stdout[-2000:]} {done.stderr[-2000:]}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self._dir} -c listen_addresses=127.0.0.1"
        log = str(self._dir / "server.log")
        self._as_postgres("pg_ctl", "start", "-w", "-D", str(self._dir / "data"), "-o", options, "-l", log)

    def stop(self) -> None:
        self._as_postgres("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self._dir / "data"))

    def destroy(self) -> None:
        with contextlib.suppress(AssertionError):
            self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
