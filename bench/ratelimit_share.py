"""Rate-limit share benchmark: how much of one budget several processes, all saturating it, manage to use.

It runs --processes copies of tests/integration/storage/ratelimit_worker.py, each taking every slot of one shared
budget (--limit per --window seconds) that it can for --duration seconds, against a fresh database (a temporary
SQLite file, or a new database on the PostgreSQL server that is dropped afterwards). It prints the budget's
time-averaged use (goal: at least 97 %), the busiest window (never above the limit) and the CPU seconds of the
processes beside the wall time. The tests assert only the "never above" half; this use depends on the load.

    .venv/bin/python bench/ratelimit_share.py --engine sqlite
    .venv/bin/python bench/ratelimit_share.py --engine postgresql --processes 3 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.tables import Base

WORKER = Path(__file__).resolve().parent.parent / "tests/integration/storage/ratelimit_worker.py"
TABLE = Base.metadata.tables["Bouncer_Rate_Limit"]


@asynccontextmanager
async def fresh_database(engine_name: str, postgres_url: str) -> AsyncIterator[str]:
    if engine_name == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'share.db'}"
            await _create_table(url)
            yield url
        return
    name = f"bq_share_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(postgres_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        await _create_table(url)
        yield url
    finally:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.dispose()


async def _create_table(url: str) -> None:
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all, tables=[TABLE])
    await engine.dispose()


async def grants(url: str) -> list[float]:
    engine = make_engine(url)
    async with engine.connect() as conn:
        times = sorted(float(t) for t in (await conn.scalars(select(TABLE.c.requested_at))).all())
    await engine.dispose()
    return times


def run_processes(url: str, args: argparse.Namespace) -> None:
    env = {**os.environ, "BQ_RATELIMIT_URL": url}
    argv = [str(args.limit), str(args.window), str(args.duration)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), f"p{i}", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(args.processes)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        proc.communicate(timeout=args.duration + 60)


def share(times: list[float], limit: int, window: float) -> tuple[float, int]:
    """(time-averaged use from the first moment a slot can be reused to the last grant, busiest window)."""
    start, end = times[0] + window, times[-1]
    samples = [start + (end - start) * i / 1000 for i in range(1001)]
    used = [bisect.bisect_right(times, s) - bisect.bisect_right(times, s - window) for s in samples]
    busiest = max(bisect.bisect_right(times, s) - bisect.bisect_right(times, s - window + 1e-6) for s in times)
    return sum(used) / (len(used) * limit), busiest


async def one_run(args: argparse.Namespace) -> tuple[float, int, float, float]:
    async with fresh_database(args.engine, args.postgres_url) as url:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        await asyncio.to_thread(run_processes, url, args)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        used, busiest = share(await grants(url), args.limit, args.window)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return used, busiest, wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--duration", type=float, default=9.0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    runs = [asyncio.run(one_run(args)) for _ in range(args.repeat)]
    for used, busiest, wall, cpu in runs:
        print(json.dumps({"share": round(used, 4), "busiest_window": busiest, "limit": args.limit,
                          "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}))  # fmt: skip
    print(f"median share {statistics.median(r[0] for r in runs):.1%} (goal >= 97 %), "
          f"busiest window {max(r[1] for r in runs)} of {args.limit}")  # fmt: skip


if __name__ == "__main__":
    main()
