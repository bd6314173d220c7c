"""The export alone: a verified request of --emails rows written out as `verify` writes it, timed in CPU seconds.

The request is stored as `submit` stores the generated list (bench/ingest_submit.py's CSV), every batch gets the
simulator's answers through `Repository.store_results`, then the rows are exported with the real path
(`Repository.iter_export` into `write_export`, CSV by default) to a file. It prints the export's wall time and
CPU seconds (SQLite runs in this process) and how much the RSS grew while exporting (ru_maxrss, so only a new
peak shows).

    .venv/bin/python bench/export.py                       # 300,000 rows, CSV, SQLite
    .venv/bin/python bench/export.py --emails 100000 --format ndjson
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

from ingest_submit import write_csv
from starlette.responses import JSONResponse
from storage_bulk import fresh_database

from bouncer_queue.bouncer.schemas import result_rows
from bouncer_queue.domain import BatchState
from bouncer_queue.lists import read_list, write_export
from bouncer_queue.pipeline.ingest import chunked
from bouncer_queue.simulator.config import SimulatorConfig
from bouncer_queue.simulator.state import SimulatorState
from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.records import RequestInfo
from bouncer_queue.storage.repository import Repository


async def verified_request(repo: Repository, path: Path, batch_size: int) -> None:
    """The list stored as request "req", each batch answered by the simulator and stored as a download is."""
    batch_ids = await repo.ingest_request(
        RequestInfo(request_id="req", user_id="user"), chunked(read_list(path), batch_size, [0])
    )
    state = SimulatorState(SimulatorConfig(api_keys=("k",), speed=1e12, queue_delay_seconds=0))
    for batch_id in batch_ids:
        emails = [row.email for row in await repo.batch_emails(batch_id)]
        created = state.create_batch("k", [(email, None) for email in emails], None)
        await asyncio.sleep(0.01)
        body = bytes(JSONResponse(state.download("k", created["batchId"], "all")).body).decode()
        await repo.try_claim_submission(batch_id, 1)
        await repo.record_batch_submitted(batch_id, f"bench{batch_id}", len(emails), 0, BatchState.QUEUED)
        await repo.record_batch_completed(batch_id, len(emails))
        await repo.store_results(batch_id, result_rows(body))


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "list.csv"
        write_csv(path, args.emails)
        async with fresh_database("sqlite", None) as url:
            engine = make_engine(url)
            repo = Repository(engine)
            await verified_request(repo, path, args.batch_size)
            for _ in range(args.repeat):
                before_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                cpu, wall = time.process_time(), time.perf_counter()
                with (Path(tmp) / f"out.{args.format}").open("w", encoding="utf-8", newline="") as out:
                    written = await write_export(repo.iter_export("req"), out, args.format)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_rss) / 1024
                print(f"export {written:,} rows as {args.format}: wall {wall:.2f} s, CPU {cpu:.2f} s "
                      f"({cpu / written * 1e6:.1f} us a row), peak RSS grew {grew:.1f} MB", flush=True)  # fmt: skip
            await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=300_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--format", choices=("csv", "tsv", "json", "ndjson"), default="csv")
    parser.add_argument("--repeat", type=int, default=2)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
