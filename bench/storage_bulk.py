"""Bulk storage benchmark: our ingest and our download-to-database path against fair raw baselines, interleaved.

- Ingest (--emails addresses of a generated CSV): ours is the real list reader (lists/) feeding
  `Repository.ingest_request` in --chunk batches; raw is reading the same file with the csv module plus the
  engine's bulk path (COPY on PostgreSQL, the driver's executemany elsewhere) with the rows prebuilt (their
  building is not timed) into Bouncer_Queue.
- Results (--results results of one download body, made by the simulator): ours is `result_rows` (the client's
  one-pass parse) plus `Repository.store_results`; raw is `json.loads` of the same body plus the bulk path with
  the rows prebuilt into Bouncer_Results.

With `--command-gc` both run with the cyclic garbage collector set as every command process sets it
(ops/collector.py: what the imports built frozen, fewer young-generation passes); by default Python's settings.

Every measurement runs in a fresh database of its own (a temporary SQLite file, or a new PostgreSQL/MariaDB
database dropped afterwards), raw and ours alternating --repeat times. It prints the median wall time and CPU
seconds (this process plus, on PostgreSQL, the database backends of the run, from /proc) and the ratios; the
goal is at most 1.5.

    .venv/bin/python bench/storage_bulk.py --engines sqlite,postgresql --repeat 3     # 1,000,000 / 100,000
    .venv/bin/python bench/storage_bulk.py --emails 50000 --results 10000 --engines sqlite
    .venv/bin/python bench/storage_bulk.py --parts ingest --engines sqlite,postgresql --repeat 3   # ingest only
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import JSONResponse

from bouncer_queue.bouncer.schemas import result_rows
from bouncer_queue.domain import BatchState
from bouncer_queue.emails import normalize_email
from bouncer_queue.lists.readers import read_list
from bouncer_queue.ops import collector
from bouncer_queue.pipeline.ingest import chunked
from bouncer_queue.simulator.config import SimulatorConfig
from bouncer_queue.simulator.state import SimulatorState
from bouncer_queue.storage import bulk, migrate
from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.records import EmailRow, RequestInfo
from bouncer_queue.storage.repository import Repository
from bouncer_queue.storage.tables import utcnow

LIMIT = 1.5
HEADER = ("email", "name", "company", "city")
QUEUE_COLUMNS = ("request_id", "user_id", "email", "name", "row_number", "extra", "priority", "status", "batch_id")
QUEUE_COLUMNS += ("created_at", "updated_at")
RESULT_FIELDS = ("status", "reason", "score", "domain", "accept_all", "disposable", "free", "role", "disabled")
RESULT_FIELDS += ("full_mailbox", "provider", "toxic", "toxicity")
fields = attrgetter(*RESULT_FIELDS)
RESULT_COLUMNS = ("request_id", "email", "batch_id", *RESULT_FIELDS, "raw", "verified_at")


@asynccontextmanager
async def fresh_database(kind: str, server_url: str | None) -> AsyncIterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            url = f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}"
            await migrate.upgrade(url)
            yield url
        return
    assert server_url is not None
    name = f"bq_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server_url).execution_options(isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        await migrate.upgrade(url)
        yield url
    finally:
        async with admin.connect() as conn:
            force = " WITH (FORCE)" if kind == "postgresql" else ""
            await conn.execute(text(f"DROP DATABASE {name}{force}"))
        await admin.dispose()


async def one_batch(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(
            text(
                'INSERT INTO "Bouncer_Batches" (request_id, user_id, priority, delay_ms, status, quantity, duplicates,'
                " processed, attempts, retries, created_at, updated_at) VALUES ('req', 'user', 3, 0, 'pending', 0, 0,"
                " 0, 0, 0, :now, :now)".replace('"', "`" if conn.dialect.name == "mysql" else '"')
            ),
            {"now": utcnow()},
        )
        return int(result.lastrowid if conn.dialect.name != "postgresql" else await _pg_last_id(conn))


async def _pg_last_id(conn: Any) -> int:
    return int(await conn.scalar(text('SELECT max(id) FROM "Bouncer_Batches"')))


@dataclass
class Cost:
    wall: float
    cpu: float


class Meter:
    """Wall time and CPU seconds of this process plus the PostgreSQL backends serving `url` (SQLite runs here)."""

    def __init__(self, url: str) -> None:
        self._url = url

    async def __aenter__(self) -> Meter:
        self._backends = await backend_cpu(self._url)
        self._cpu, self._wall = time.process_time(), time.perf_counter()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        cpu = time.process_time() - self._cpu
        backends = await backend_cpu(self._url)
        self.cost = Cost(self.wall, cpu + sum(t - self._backends.get(pid, 0.0) for pid, t in backends.items()))


async def backend_cpu(url: str) -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL backend connected to this database (empty elsewhere)."""
    if not url.startswith("postgresql"):
        return {}
    engine = make_engine(url)
    async with engine.connect() as conn:
        query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        pids = list((await conn.scalars(text(query))).all())
    await engine.dispose()
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def write_list(path: Path, count: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(cells(i) for i in range(count))


def cells(i: int) -> tuple[str, ...]:
    email = f"Person{i}@Example{i % 97}.com" if i % 7 == 0 else f"person{i}@example{i % 97}.com"
    return (email, f"Person {i}", f"Company {i % 5000}", f"City {i % 300}")


def queue_rows(parsed: list[list[str]], batch_id: int) -> list[tuple[Any, ...]]:
    """The rows our ingest stores for the list, built from the csv module's cells (untimed: prebuilt): the
    address in its normal form, the name, and the whole input row as `extra`, as the list readers keep it."""
    now = utcnow()
    return [
        ("req", "user", normalize_email(row[0]), row[1], n + 2, json.dumps(dict(zip(HEADER, row, strict=True))),
         3, "batched", batch_id, now, now)
        for n, row in enumerate(parsed)
    ]  # fmt: skip


async def raw_ingest(kind: str, server_url: str | None, path: Path, chunk: int) -> Cost:
    async with fresh_database(kind, server_url) as url:
        engine = make_engine(url)
        batch_id = await one_batch(engine)
        async with Meter(url) as reading:
            with path.open(newline="", encoding="utf-8") as handle:
                parsed = list(csv.reader(handle))[1:]
        rows = queue_rows(parsed, batch_id)
        del parsed
        async with Meter(url) as inserting, engine.begin() as conn:
            for start in range(0, len(rows), chunk):
                await bulk.insert_rows(conn, "Bouncer_Queue", QUEUE_COLUMNS, rows[start : start + chunk])
        await engine.dispose()
    return Cost(reading.cost.wall + inserting.cost.wall, reading.cost.cpu + inserting.cost.cpu)


async def our_ingest(kind: str, server_url: str | None, path: Path, chunk: int) -> Cost:
    async with fresh_database(kind, server_url) as url:
        engine = make_engine(url)
        repo = Repository(engine)
        request = RequestInfo(request_id="req", user_id="user")
        async with Meter(url) as ours:
            await repo.ingest_request(request, chunked(read_list(path), chunk, [0]))
        await engine.dispose()
    return ours.cost


def download_body(count: int) -> str:
    """One download of `count` results as the simulator sends it."""
    state = SimulatorState(SimulatorConfig(api_keys=("k",), speed=1e12, queue_delay_seconds=0))
    created = state.create_batch("k", [(f"person{i}@example{i % 97}.com", None) for i in range(count)], None)
    time.sleep(0.01)
    return bytes(JSONResponse(state.download("k", created["batchId"], "all")).body).decode()


def result_tuples(objs: list[dict[str, Any]], batch_id: int) -> list[tuple[Any, ...]]:
    """The rows our store writes, prebuilt from the parsed objects (untimed)."""
    now = utcnow()
    rows = result_rows(json.dumps(objs))
    return [("req", r.email.lower(), batch_id, *fields(r), r.raw_json, now) for r in rows]


async def raw_results(kind: str, server_url: str | None, body: str, count: int) -> Cost:
    async with fresh_database(kind, server_url) as url:
        engine, _, batch_id = await prepared_batch(url, count)
        async with Meter(url) as parsing:
            objs = json.loads(body)
        rows = result_tuples(objs, batch_id)
        async with Meter(url) as inserting, engine.begin() as conn:
            await bulk.insert_rows(conn, "Bouncer_Results", RESULT_COLUMNS, rows)
        await engine.dispose()
    return Cost(parsing.cost.wall + inserting.cost.wall, parsing.cost.cpu + inserting.cost.cpu)


async def our_results(kind: str, server_url: str | None, body: str, count: int) -> Cost:
    async with fresh_database(kind, server_url) as url:
        engine, repo, batch_id = await prepared_batch(url, count)
        async with Meter(url) as ours:
            await repo.store_results(batch_id, result_rows(body))
        await engine.dispose()
    return ours.cost


async def prepared_batch(url: str, count: int) -> tuple[AsyncEngine, Repository, int]:
    engine = make_engine(url)
    repo = Repository(engine)
    rows = [EmailRow(email=f"person{i}@example{i % 97}.com") for i in range(count)]
    [batch_id] = await repo.ingest_request(RequestInfo(request_id="req", user_id="user"), [rows])
    await repo.try_claim_submission(batch_id, 1)
    await repo.record_batch_submitted(batch_id, "bench", count, 0, BatchState.QUEUED)
    await repo.record_batch_completed(batch_id, count)
    return engine, repo, batch_id


def verdict(what: str, raws: list[Cost], ours: list[Cost]) -> str:
    raw_wall, our_wall = statistics.median(c.wall for c in raws), statistics.median(c.wall for c in ours)
    raw_cpu, our_cpu = statistics.median(c.cpu for c in raws), statistics.median(c.cpu for c in ours)
    ratio, cpu_ratio = our_wall / raw_wall, our_cpu / raw_cpu
    ok = "OK" if min(ratio, cpu_ratio) <= LIMIT else "OVER"
    return (f"{what}: wall raw {raw_wall:6.2f} s ours {our_wall:6.2f} s ratio {ratio:4.2f} | CPU raw {raw_cpu:6.2f} s "
            f"ours {our_cpu:6.2f} s ratio {cpu_ratio:4.2f}  {ok}")  # fmt: skip


async def run(args: argparse.Namespace) -> None:
    servers = {"sqlite": None, "postgresql": args.postgres_url, "mysql": args.mysql_url}
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "list.csv"
        write_list(path, args.emails)
        body = download_body(args.results) if "results" in parts else ""
        for kind in args.engines.split(","):
            server = servers[kind]
            ingest: tuple[list[Cost], list[Cost]] = ([], [])
            results: tuple[list[Cost], list[Cost]] = ([], [])
            for _ in range(args.repeat):
                if "ingest" in parts:
                    ingest[0].append(await raw_ingest(kind, server, path, args.chunk))
                    ingest[1].append(await our_ingest(kind, server, path, args.chunk))
                if "results" in parts:
                    results[0].append(await raw_results(kind, server, body, args.results))
                    results[1].append(await our_results(kind, server, body, args.results))
            if "ingest" in parts:
                print(f"{kind:10} {verdict(f'ingest  {args.emails:>9,} emails', *ingest)}", flush=True)
            if "results" in parts:
                print(f"{kind:10} {verdict(f'results {args.results:>9,} rows  ', *results)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=1_000_000)
    parser.add_argument("--results", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=10_000, help="emails per batch (BATCH_SIZE)")
    parser.add_argument("--engines", default="sqlite,postgresql,mysql")
    parser.add_argument("--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--mysql-url", default="mysql+aiomysql://root@127.0.0.1:3306/test")
    parser.add_argument("--parts", default="ingest,results", help="what to measure: ingest, results or both")
    parser.add_argument("--repeat", type=int, default=3, help="raw/ours pairs per engine; medians are printed")
    parser.add_argument(
        "--command-gc", action="store_true", help="set the garbage collector as every command process does"
    )
    args = parser.parse_args()
    if args.command_gc:
        collector.tune_for_bulk_rows()  # for raw and ours alike
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
