"""Bulk storage benchmark: the repository's ingest and store_results against a raw bulk insert of the same rows.

For each engine it times `Repository.ingest_request` for --emails addresses (in --chunk batches) against the
driver's own bulk path into Bouncer_Queue (COPY on PostgreSQL, executemany elsewhere), and
`Repository.store_results` for --results results against the same bulk path into Bouncer_Results. Every
measurement runs in a database of its own (a temporary SQLite file, or a new PostgreSQL/MariaDB database that
is dropped afterwards). The requirement is a ratio of at most 1.5.

    .venv/bin/python bench/storage_bulk.py                          # 1,000,000 emails, 100,000 results
    .venv/bin/python bench/storage_bulk.py --emails 50000 --results 10000 --engines sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from operator import attrgetter
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bouncer_queue.domain import BatchState
from bouncer_queue.storage import bulk, migrate
from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.records import EmailRow, RequestInfo, ResultRow
from bouncer_queue.storage.repository import Repository
from bouncer_queue.storage.tables import utcnow

LIMIT = 1.5
QUEUE_COLUMNS = ("request_id", "user_id", "email", "name", "row_number", "extra", "priority", "status", "batch_id")
QUEUE_COLUMNS += ("created_at", "updated_at")
RESULT_FIELDS = ("status", "reason", "score", "domain", "accept_all", "disposable", "free", "role", "disabled")
RESULT_FIELDS += ("full_mailbox", "provider", "toxic", "toxicity")
fields = attrgetter(*RESULT_FIELDS)
RESULT_COLUMNS = ("request_id", "email", "batch_id", *RESULT_FIELDS, "raw", "verified_at")


def email_chunks(count: int, size: int) -> Iterator[list[EmailRow]]:
    for start in range(0, count, size):
        yield [
            EmailRow(email=f"person{i}@example{i % 97}.com", name=f"Person {i}", row_number=i + 1, extra={"n": str(i)})
            for i in range(start, min(start + size, count))
        ]


def raw_queue_chunks(count: int, size: int, batch_id: int) -> Iterator[list[tuple[Any, ...]]]:
    now = utcnow()
    for start in range(0, count, size):
        yield [
            (
                *("req", "user", f"person{i}@example{i % 97}.com", f"Person {i}", i + 1, json.dumps({"n": str(i)})),
                *(3, "batched", batch_id, now, now),
            )
            for i in range(start, min(start + size, count))
        ]


def results_for(count: int) -> list[ResultRow]:
    return [
        ResultRow(
            email=f"person{i}@example{i % 97}.com",
            status="deliverable" if i % 3 else "risky",
            reason="accepted_email",
            score=90,
            domain=f"example{i % 97}.com",
            accept_all="no",
            disposable="no",
            free="no",
            role="no",
            disabled="no",
            full_mailbox="no",
            provider="google.com",
            toxic="unknown",
            toxicity=0,
            raw={"email": f"person{i}@example{i % 97}.com", "status": "deliverable", "score": 90, "dns": {"a": "x"}},
        )
        for i in range(count)
    ]


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


async def timed(action: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


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


async def bench_ingest(kind: str, server_url: str | None, emails: int, chunk: int) -> tuple[float, float]:
    async with fresh_database(kind, server_url) as url:
        engine = make_engine(url)
        batch_id = await one_batch(engine)

        async def raw() -> None:
            async with engine.begin() as conn:
                for rows in raw_queue_chunks(emails, chunk, batch_id):
                    await bulk.insert_rows(conn, "Bouncer_Queue", QUEUE_COLUMNS, rows)

        raw_seconds = await timed(raw)
        await engine.dispose()
    async with fresh_database(kind, server_url) as url:
        engine = make_engine(url)
        repo = Repository(engine)
        request = RequestInfo(request_id="req", user_id="user")
        repo_seconds = await timed(lambda: repo.ingest_request(request, email_chunks(emails, chunk)))
        await engine.dispose()
    return raw_seconds, repo_seconds


async def prepared_batch(url: str, count: int) -> tuple[AsyncEngine, Repository, int]:
    engine = make_engine(url)
    repo = Repository(engine)
    [batch_id] = await repo.ingest_request(
        RequestInfo(request_id="req", user_id="user"), [next(email_chunks(count, count))]
    )
    await repo.try_claim_submission(batch_id, 1)
    await repo.record_batch_submitted(batch_id, "bench", count, 0, BatchState.QUEUED)
    await repo.record_batch_completed(batch_id, count)
    return engine, repo, batch_id


async def bench_results(kind: str, server_url: str | None, count: int) -> tuple[float, float, float]:
    results = results_for(count)
    async with fresh_database(kind, server_url) as url:
        engine, _, batch_id = await prepared_batch(url, count)

        async def raw() -> None:
            now = utcnow()
            rows = [("req", r.email, batch_id, *fields(r), json.dumps(dict(r.raw)), now) for r in results]
            async with engine.begin() as conn:
                await bulk.insert_rows(conn, "Bouncer_Results", RESULT_COLUMNS, rows)

        raw_seconds = await timed(raw)
        await engine.dispose()
    async with fresh_database(kind, server_url) as url:
        engine, repo, batch_id = await prepared_batch(url, count)
        repo_seconds = await timed(lambda: repo.store_results(batch_id, results))
        again_seconds = await timed(lambda: repo.store_results(batch_id, results))
        await engine.dispose()
    return raw_seconds, repo_seconds, again_seconds


async def bench_results_executemany(server_url: str, count: int) -> float:
    """PostgreSQL only: the same results through the driver's executemany instead of COPY (the other raw path)."""
    results = results_for(count)
    async with fresh_database("postgresql", server_url) as url:
        engine, _, batch_id = await prepared_batch(url, count)
        names = ", ".join(f'"{c}"' for c in RESULT_COLUMNS)
        marks = ", ".join(f"${n}" for n in range(1, len(RESULT_COLUMNS) + 1))

        async def raw() -> None:
            now = utcnow()
            rows = [("req", r.email, batch_id, *fields(r), json.dumps(dict(r.raw)), now) for r in results]
            async with engine.begin() as conn:
                await conn.exec_driver_sql(f'INSERT INTO "Bouncer_Results" ({names}) VALUES ({marks})', rows)

        seconds = await timed(raw)
        await engine.dispose()
    return seconds


def verdict(raw: float, repo: float) -> str:
    ratio = repo / raw
    return f"raw {raw:7.2f} s  repository {repo:7.2f} s  ratio {ratio:4.2f}  {'OK' if ratio <= LIMIT else 'OVER'}"


async def run(args: argparse.Namespace) -> None:
    servers = {"sqlite": None, "postgresql": args.postgres_url, "mysql": args.mysql_url}
    for kind in args.engines.split(","):
        raw, repo = await bench_ingest(kind, servers[kind], args.emails, args.chunk)
        print(f"{kind:10} ingest  {args.emails:>9,} emails : {verdict(raw, repo)}", flush=True)
        raw, repo, again = await bench_results(kind, servers[kind], args.results)
        print(f"{kind:10} results {args.results:>9,} rows   : {verdict(raw, repo)}  (re-run {again:.2f} s)", flush=True)
        if kind == "postgresql":
            raw = await bench_results_executemany(args.postgres_url, args.results)
            print(f"{kind:10} results vs raw executemany (not COPY): {verdict(raw, repo)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=1_000_000)
    parser.add_argument("--results", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=10_000, help="emails per batch (BATCH_SIZE)")
    parser.add_argument("--engines", default="sqlite,postgresql,mysql")
    parser.add_argument("--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--mysql-url", default="mysql+aiomysql://root@127.0.0.1:3306/test")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
