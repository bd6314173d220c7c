"""Fault benchmark (issue #8): does every paid batch end with its results stored, and is nothing paid twice?

For each scenario it runs the whole system for real: a list of --emails rows (with --repeats of them repeated
addresses) submitted with `bouncer-queue submit`, --workers `bouncer-queue workers` processes (the first serves
Bouncer's callbacks; BOUNCER_CALLBACK_URL points at it; a supervisor loop restarts any process that exits), the
simulator over HTTP in this process, and a PostgreSQL cluster and a redis-server of the bench's own (never the
machine's shared ones). A fault is injected while the request runs; the run ends when every row has an outcome,
or when nothing has moved for --stall-seconds. It then counts, from the simulator's own state and log and from
the ledger:

- lost: unique addresses with no result whose batches were given up on (dead);
- paid twice: credits charged beyond the unique addresses sent (an address paid more than once);
- stuck: batches neither downloaded nor dead when the run ended;
- dead letters: rows of Bouncer_Dead_Letter_Queue;
- completed without an operator: every unique address has its result, with no command run by hand.

Every rate limit keeps its count but over --window-seconds (6) instead of a minute, ours and the simulator's
alike, so a run takes minutes, not an hour. The workers wait CALLBACK_WAIT_SECONDS=120 for a callback (the
simulator finishes a batch in seconds), so a batch whose worker was killed after its claim but before its request
left ends as a dead letter within the run.

    .venv/bin/python bench/faults.py                                  # 100,000 rows, 3 workers, every scenario
    .venv/bin/python bench/faults.py --emails 20000 --only drop,kill9  # smaller, while others use the machine
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import resource
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fault_support import CLI, Fleet, OwnPostgres, OwnRedis, free_port
from sqlalchemy import text

from bouncer_queue.simulator import SimulatorConfig, SimulatorServer
from bouncer_queue.storage import migrate
from bouncer_queue.storage.db import make_engine

API_KEY = "bench-faults-key"
PLENTY = 100_000_000
COLUMNS = ("scenario", "lost", "paid twice", "stuck", "dead letters", "completed without an operator")


@dataclass
class Run:
    """One scenario's running system, handed to its fault."""

    args: argparse.Namespace
    fleet: Fleet
    simulator: SimulatorServer
    redis: OwnRedis
    postgres: OwnPostgres
    database_url: str
    request_id: str
    rows: int
    notes: list[str] = field(default_factory=list)

    async def progress(self) -> float:
        return await finished_rows(self.database_url, self.request_id) / self.rows


Fault = Callable[[Run], Awaitable[None]]


async def no_fault(run: Run) -> None:
    return None


async def kill9(run: Run) -> None:
    """50 SIGKILLs of a random workers process (each restarted), spread over the run."""
    rng = random.Random(8)
    for done in range(run.args.kills):
        await asyncio.sleep(run.args.kill_every)
        if await run.progress() >= 1:
            run.notes.append(f"{done} kills")
            return
        # In the event loop, not a thread: the supervisor loop must not restart the same process meanwhile.
        run.fleet.kill9(rng.randrange(len(run.fleet.processes)))
    run.notes.append(f"{run.args.kills} kills")


async def _a_fifth_done(run: Run) -> None:
    while await run.progress() < 0.2:
        await asyncio.sleep(0.5)


async def flushall(run: Run) -> None:
    await _a_fifth_done(run)
    await run.redis.flushall()


async def redis_restart_empty(run: Run) -> None:
    await _a_fifth_done(run)
    await asyncio.to_thread(run.redis.stop)
    await asyncio.sleep(2)
    await asyncio.to_thread(run.redis.start)


async def database_down(run: Run) -> None:
    await _a_fifth_done(run)
    await asyncio.to_thread(run.postgres.stop)
    await asyncio.sleep(30)
    await asyncio.to_thread(run.postgres.start)


async def top_up_after_402(run: Run) -> None:
    """Wait for Bouncer's first 402, then top the account up (as a user buying credits would)."""
    while not any(r["status"] == 402 for r in run.simulator.state.requests):
        await asyncio.sleep(0.5)
    run.simulator.state.set_credits(API_KEY, PLENTY)


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: Fault
    simulator: dict[str, Any] = field(default_factory=dict)
    #: Credits as a share of the unique addresses (None: plenty).
    credit_share: float | None = None


SCENARIOS = {
    "clean": Scenario("clean run", no_fault),
    "kill9": Scenario("50 kill -9s", kill9, {"create_latency_seconds": 0.5}),
    "flushall": Scenario("Redis FLUSHALL", flushall),
    "redis-restart": Scenario("Redis restarted empty", redis_restart_empty),
    "db-down": Scenario("database down 30 s", database_down),
    "errors": Scenario("5 % 503s, 5 % failed batches", no_fault, {"fail_rate": 0.05, "batch_fail_rate": 0.05}),
    "drop": Scenario("5 % dropped create answers (callback URL)", no_fault, {"drop_create_response_rate": 0.05}),
    "credits": Scenario("a 402, then a top-up", top_up_after_402, credit_share=0.5),
}


def write_list(path: Path, rows: int, repeats: float) -> int:
    """`rows` rows, the last `repeats` share repeating earlier addresses (one in three re-cased); the unique count."""
    unique = max(1, int(rows * (1 - repeats)))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name"])
        for i in range(rows):
            n = i if i < unique else (i * 7919) % unique
            email = f"user{n}@example{n % 89}.com"
            writer.writerow([email.upper() if i >= unique and i % 3 == 0 else email, f"row{i}"])
    return unique


async def scalar(url: str, statement: str, **params: Any) -> int:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(text(statement), params) or 0)
    finally:
        await engine.dispose()


async def finished_rows(url: str, request_id: str) -> int:
    try:
        return await scalar(
            url,
            'SELECT COUNT(*) FROM "Bouncer_Queue" WHERE request_id = :r '
            "AND status IN ('completed', 'failed', 'dead')",
            r=request_id,
        )
    except Exception:  # the database is down (the db-down scenario): no progress to report
        return -1


async def batch_states(url: str, request_id: str) -> str:
    """The request's batch states, as a comparable signature ("" while the database is down)."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text('SELECT status, COUNT(*) FROM "Bouncer_Batches" WHERE request_id = :r GROUP BY status ORDER BY 1'),
                {"r": request_id},
            )
            return repr(rows.all())
    except Exception:
        return ""
    finally:
        await engine.dispose()


def worker_env(
    args: argparse.Namespace, run_dir: Path, database_url: str, redis_url: str, base_url: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOUNCER_", "QUEUE_", "DATABASE_", "REDIS_"))}
    callback_port = args.callback_port
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        QUEUE_PREFIX="{faults}",
        BOUNCER_API_KEY=API_KEY,
        BOUNCER_API_BASE_URL=base_url,
        BOUNCER_QUEUE_STATE_DIR=str(run_dir / "state"),
        BOUNCER_CALLBACK_URL=f"http://127.0.0.1:{callback_port}",
        BATCH_SIZE=str(args.batch_size),
        # Every budget (ours and the simulator's) per --window-seconds instead of per minute: the same shape, faster.
        RATE_LIMIT_WINDOW_SECONDS=str(args.window_seconds),
        QUEUE_LIMIT_DURATION_MS=str(int(args.window_seconds * 1000)),
        POLL_INTERVAL_SECONDS="2",
        RECONCILE_INTERVAL_SECONDS="5",
        HEALTH_CHECK_INTERVAL_SECONDS="5",
        BOUNCER_CREATE_TIMEOUT_SECONDS="30",
        # The simulator finishes a batch within seconds, so a callback not come in 2 minutes never will: such a
        # batch (its worker killed before the request left) is then dead-lettered, "may have been charged".
        CALLBACK_WAIT_SECONDS="120",
        BOUNCER_CONNECT_TIMEOUT_SECONDS="5",
        SHUTDOWN_GRACE_SECONDS="10",
        LOG_JSON="true",
    )
    return env


async def wait_for_outcome(run: Run, stall_seconds: float) -> None:
    """Until every row has an outcome, or nothing moved for `stall_seconds`; keeps the fleet supervised."""
    last: tuple[Any, ...] = ()
    moved = time.monotonic()
    while True:
        await asyncio.sleep(1)
        run.fleet.supervise()
        done = await finished_rows(run.database_url, run.request_id)
        if done == run.rows:
            return
        seen = (done, run.simulator.state.batch_creations, await batch_states(run.database_url, run.request_id))
        if seen != last:
            last, moved = seen, time.monotonic()
        elif time.monotonic() - moved > stall_seconds:
            run.notes.append(f"stalled {stall_seconds:g} s")
            return


def credits_charged(simulator: SimulatorServer) -> int:
    """Credits the simulator's batches cost: settled ones what they used, running ones what they hold, failed
    ones nothing (refunded). Not the balance: a top-up changes that."""
    total = 0
    for batch in simulator.state.snapshot()["batches"]:
        if batch["status"] == "completed":
            total += batch["credits"]
        elif batch["status"] != "failed":
            total += batch["reserved"]
    return total


async def measure(run: Run, unique: int) -> dict[str, Any]:
    url, rid = run.database_url, run.request_id
    state = run.simulator.state
    charged = credits_charged(run.simulator)
    with_result = await scalar(url, 'SELECT COUNT(*) FROM "Bouncer_Results" WHERE request_id = :r', r=rid)
    dead_unique = await scalar(
        url,
        'SELECT COUNT(DISTINCT lower(q.email)) FROM "Bouncer_Queue" q JOIN "Bouncer_Batches" b ON b.id = q.batch_id '
        "WHERE q.request_id = :r AND b.status = 'dead' AND NOT EXISTS (SELECT 1 FROM \"Bouncer_Results\" x "
        "WHERE x.request_id = q.request_id AND x.email = lower(q.email))",
        r=rid,
    )
    stuck = await scalar(
        url,
        "SELECT COUNT(*) FROM \"Bouncer_Batches\" WHERE request_id = :r AND status NOT IN ('downloaded', 'dead')",
        r=rid,
    )
    letters = await scalar(url, 'SELECT COUNT(*) FROM "Bouncer_Dead_Letter_Queue"')
    batches = await scalar(url, 'SELECT COUNT(*) FROM "Bouncer_Batches" WHERE request_id = :r', r=rid)
    return {
        "lost": dead_unique,
        "paid twice": max(0, charged - unique),
        "stuck": stuck,
        "dead letters": letters,
        "completed without an operator": "yes" if with_result == unique else f"no ({unique - with_result} missing)",
        "creations/batches": f"{state.batch_creations}/{batches}",
        "paid/unique": f"{charged / unique:.3f}",
    }


async def run_scenario(args: argparse.Namespace, key: str, root: Path, postgres: OwnPostgres) -> dict[str, Any]:
    run_dir = root / key
    run_dir.mkdir()
    redis = OwnRedis(run_dir)
    redis.start()
    try:
        return await _run_with_redis(args, key, run_dir, redis, postgres)
    finally:
        redis.stop()


async def _run_with_redis(
    args: argparse.Namespace, key: str, run_dir: Path, redis: OwnRedis, postgres: OwnPostgres
) -> dict[str, Any]:
    scenario = SCENARIOS[key]
    database_url = await postgres.create_database(f"faults_{key.replace('-', '_')}_{uuid.uuid4().hex[:6]}")
    await migrate.upgrade(database_url)
    unique = write_list(run_dir / "list.csv", args.emails, args.repeats)
    credits = int(unique * scenario.credit_share) if scenario.credit_share else PLENTY
    overrides = dict(scenario.simulator)
    if key == "kill9":  # batches slow enough that the kills land while work is under way
        overrides["speed"] = min(args.speed, args.batch_size / (args.kills * args.kill_every * 0.8))
    config = SimulatorConfig(**(_simulator_defaults(args, credits) | overrides))
    wall, cpu_children, cpu_self = time.monotonic(), _children_cpu(), time.process_time()
    with SimulatorServer(config) as simulator:
        env = worker_env(args, run_dir, database_url, redis.url, simulator.base_url)
        request_id = _submit(env, run_dir)
        fleet = Fleet(env, run_dir, args.workers, args.callback_port)
        run = Run(args, fleet, simulator, redis, postgres, database_url, request_id, args.emails)
        fault = asyncio.create_task(scenario.fault(run))
        try:
            await wait_for_outcome(run, args.stall_seconds)
        finally:
            fault.cancel()
            await asyncio.gather(fault, return_exceptions=True)
            if not postgres.running:
                postgres.start()
            await fleet.stop()
        row = {"scenario": scenario.name} | await measure(run, unique)
    row["wall s"] = f"{time.monotonic() - wall:.0f}"
    row["CPU s"] = f"{_children_cpu() - cpu_children + time.process_time() - cpu_self:.0f}"
    row["notes"] = "; ".join(
        run.notes + _injected(simulator) + ([f"{fleet.restarts} restarts"] if fleet.restarts else [])
    )
    return row


def _injected(simulator: SimulatorServer) -> list[str]:
    """What the simulator injected, from its own log and state."""
    statuses = [r["status"] for r in simulator.state.requests]
    found = {
        "dropped create answers": sum(1 for r in simulator.state.requests if r["status"] == 0),
        "503s": statuses.count(503),
        "402s": statuses.count(402),
        "failed batches": sum(1 for b in simulator.state.snapshot()["batches"] if b["status"] == "failed"),
    }
    return [f"{count} {what}" for what, count in found.items() if count]


def _simulator_defaults(args: argparse.Namespace, credits: int) -> dict[str, Any]:
    return {
        "api_keys": (API_KEY,),
        "credits": credits,
        "speed": args.speed,
        "window_seconds": args.window_seconds,
        "queue_delay_seconds": 0.5,
        "callback_attempts": 1_000,
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _submit(env: dict[str, str], cwd: Path) -> str:
    # --allow-partial: the 402 scenario's balance covers half the list on purpose, so Bouncer answers 402 mid-run.
    command = [str(CLI), "submit", str(cwd / "list.csv"), "--allow-partial"]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"submit exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = [*COLUMNS, "creations/batches", "paid/unique", "wall s", "CPU s", "notes"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=100_000, help="rows in the list")
    parser.add_argument("--repeats", type=float, default=0.04, help="share of rows repeating an earlier address")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="default: a fiftieth of --emails")
    parser.add_argument("--speed", type=float, default=500.0, help="simulator emails per second per batch")
    parser.add_argument("--window-seconds", type=float, default=6.0, help="rate-limit windows (Bouncer: 60)")
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--kill-every", type=float, default=2.0, help="seconds between kill -9s")
    parser.add_argument("--stall-seconds", type=float, default=180.0)
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated: {', '.join(SCENARIOS)}")
    args = parser.parse_args()
    args.batch_size = args.batch_size or max(100, args.emails // 50)
    args.callback_port = free_port()
    return args


async def main() -> None:
    args = parse_args()
    root = Path(tempfile.mkdtemp(prefix="bq-faults-"))
    root.chmod(0o755)
    postgres = OwnPostgres(root)
    postgres.start()
    rows = []
    try:
        for key in args.only.split(","):
            rows.append(await run_scenario(args, key.strip(), root, postgres))
            print(f"done: {rows[-1]}", flush=True)
    finally:
        if postgres.running:
            postgres.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n{args.emails:,} rows ({args.repeats:.0%} repeated), {args.workers} workers, callback URL set\n")
    print_table(rows)


if __name__ == "__main__":
    asyncio.run(main())
