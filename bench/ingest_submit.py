"""Ingest benchmark (issue #4): `bouncer-queue submit` of a large CSV against a raw bulk insert of the same rows.

It writes a CSV of --emails rows (the address plus a few extra columns), then runs the real command,
`bouncer-queue submit FILE`, as a subprocess with DATABASE_URL pointing at a fresh, migrated database (a
temporary SQLite file by default, or a new PostgreSQL database with --engine postgresql, dropped afterwards)
and REDIS_URL at the machine's Redis under a QUEUE_PREFIX of its own, whose keys are deleted afterwards. No
workers run, so the create-batch jobs just wait in Redis. It prints the command's wall time, the time of a
raw bulk insert of the same rows into Bouncer_Queue on the same engine (COPY on PostgreSQL, the driver's
executemany on SQLite) in another fresh database, their ratio (goal: at most 1.5) and the command's peak
RSS (goal: at most 200 MB), read from /usr/bin/time -v when present, else from getrusage(RUSAGE_CHILDREN).

    .venv/bin/python bench/ingest_submit.py                              # 1,000,000 emails on SQLite
    .venv/bin/python bench/ingest_submit.py --engine postgresql
    .venv/bin/python bench/ingest_submit.py --emails 50000 --repeat 3    # a quick run, median of three
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gc
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import text
from storage_bulk import QUEUE_COLUMNS, fresh_database, one_batch

from bouncer_queue.storage import bulk
from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.tables import utcnow

RATIO_LIMIT = 1.5
RSS_LIMIT_MB = 200
HEADER = ("email", "first_name", "last_name", "company", "city", "signup_date")
EXTRA = HEADER[1:]
COMMAND = Path(sys.executable).with_name("bouncer-queue")
TIME_V = Path("/usr/bin/time")


def cells(i: int) -> tuple[str, ...]:
    """Row i of the generated list; one address in seven is mixed-case, as real lists are."""
    email = f"Person{i}@Example{i % 97}.com" if i % 7 == 0 else f"person{i}@example{i % 97}.com"
    return (email, f"First{i}", f"Last{i}", f"Company {i % 5000}", f"City {i % 300}", f"2024-{i % 12 + 1:02d}-15")


def write_csv(path: Path, count: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(cells(i) for i in range(count))


def raw_chunks(count: int, size: int, batch_id: int) -> Iterator[list[tuple[Any, ...]]]:
    """The rows `submit` stores for the generated list, as tuples in QUEUE_COLUMNS order."""
    now = utcnow()
    for start in range(0, count, size):
        chunk = []
        for i in range(start, min(start + size, count)):
            row = cells(i)
            extra = json.dumps(dict(zip(EXTRA, row[1:], strict=True)))
            name = f"{row[1]} {row[2]}"
            chunk.append(("req", "cli", row[0].lower(), name, i + 2, extra, 3, "batched", batch_id, now, now))
        yield chunk


async def raw_insert(kind: str, server_url: str | None, count: int, chunk: int) -> float:
    async with fresh_database(kind, server_url) as url:
        engine = make_engine(url)
        batch_id = await one_batch(engine)
        started = time.perf_counter()
        async with engine.begin() as conn:
            for rows in raw_chunks(count, chunk, batch_id):
                await bulk.insert_rows(conn, "Bouncer_Queue", QUEUE_COLUMNS, rows)
        seconds = time.perf_counter() - started
        await engine.dispose()
    return seconds


@dataclass
class SubmitRun:
    seconds: float
    peak_rss_mb: float
    stored: int


async def submit(kind: str, server_url: str | None, csv_path: Path, redis_url: str, chunk: int) -> SubmitRun:
    prefix = f"{{bqbench-{uuid.uuid4().hex[:10]}}}"
    async with fresh_database(kind, server_url) as url:
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url, "QUEUE_PREFIX": prefix}
        env["BATCH_SIZE"] = str(chunk)
        try:
            seconds, peak_mb = await asyncio.to_thread(run_command, csv_path, env)
        finally:
            await delete_keys(redis_url, prefix)
        engine = make_engine(url)
        async with engine.connect() as conn:
            stored = int(await conn.scalar(text('SELECT count(*) FROM "Bouncer_Queue"')) or 0)
        await engine.dispose()
    return SubmitRun(seconds, peak_mb, stored)


def run_command(csv_path: Path, env: dict[str, str]) -> tuple[float, float]:
    """Run `bouncer-queue submit`; return its wall time and peak RSS in MB."""
    argv = [str(COMMAND), "submit", str(csv_path)]
    timed = TIME_V.exists()
    if timed:
        argv = [str(TIME_V), "-v", *argv]
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"submit failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    if timed:
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
        if found is None:
            raise RuntimeError(f"no peak RSS in /usr/bin/time output:\n{done.stderr}")
        return seconds, int(found.group(1)) / 1024
    # Linux reports ru_maxrss in KiB: the largest of the children waited for so far, i.e. this one.
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


async def delete_keys(redis_url: str, prefix: str) -> None:
    """Delete the bullmq keys of this run, and nothing else."""
    client = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def run(args: argparse.Namespace) -> None:
    server_url = args.postgres_url if args.engine == "postgresql" else None
    workdir = Path(tempfile.mkdtemp(prefix="bq_ingest_"))
    try:
        csv_path = workdir / "list.csv"
        write_csv(csv_path, args.emails)
        size_mb = csv_path.stat().st_size / 2**20
        print(f"{args.engine}: {args.emails:,} emails, CSV {size_mb:.0f} MB, {COMMAND.name} submit", flush=True)
        raws, runs = [], []
        for attempt in range(1, args.repeat + 1):
            raws.append(await raw_insert(args.engine, server_url, args.emails, args.chunk))
            runs.append(await submit(args.engine, server_url, csv_path, args.redis_url, args.chunk))
            last = runs[-1]
            print(
                f"  run {attempt}: raw {raws[-1]:7.2f} s  submit {last.seconds:7.2f} s  "
                f"ratio {last.seconds / raws[-1]:4.2f}  peak RSS {last.peak_rss_mb:6.1f} MB  stored {last.stored:,}",
                flush=True,
            )
            if last.stored != args.emails:
                raise RuntimeError(f"submit stored {last.stored} rows, expected {args.emails}")
        report(args.engine, raws, runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def report(engine: str, raws: list[float], runs: list[SubmitRun]) -> None:
    raw = statistics.median(raws)
    seconds = statistics.median(r.seconds for r in runs)
    rss = max(r.peak_rss_mb for r in runs)
    ratio = seconds / raw
    print(
        f"{engine:10} median: raw {raw:7.2f} s  submit {seconds:7.2f} s  ratio {ratio:4.2f} "
        f"{'OK' if ratio <= RATIO_LIMIT else 'OVER'}  peak RSS {rss:6.1f} MB "
        f"{'OK' if rss <= RSS_LIMIT_MB else 'OVER'}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--chunk", type=int, default=10_000, help="emails per batch (BATCH_SIZE)")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the medians are reported")
    parser.add_argument("--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    # The command freezes what its imports built (see interfaces/cli.py); so does the raw side, to be as fast.
    gc.freeze()
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
