"""End-to-end benchmark: a whole list through the real commands against a time-scaled simulator, judged by its log.

The simulator (`bouncer-queue simulator`) runs in a process of its own on a loopback port, at --speed addresses a
second per batch (Bouncer: about 40), with its rate-limit windows of --window seconds. The system runs as a user
would: --processes `bouncer-queue workers` processes and `bouncer-queue submit FILE` (PostgreSQL or SQLite, the
machine's Redis under a prefix of its own), or with --verify the one command `bouncer-queue verify FILE` (its
embedded Valkey).
Every database is fresh and dropped afterwards. Default settings, except the windows scaled with the simulator.

From the simulator's own request log (/__simulator/requests) and batch times (/__simulator/state) it prints:

- wall / ideal: from the submit (or verify) start until every address has its outcome, against the time
  Bouncer itself needs: MAX_CONCURRENT_BATCHES slots, each batch queue delay + size / speed, creates no faster
  than the create budget allows (goal <= 1.10); and the same from the first create's arrival at Bouncer on
  (`after_first_create_over_ideal`: the batch pipeline alone, without the ingest before it);
- slot saturation: the share of the slots Bouncer was working on a batch of ours, from the first create to the
  last one, i.e. while work waited (goal >= 95 %);
- budget share: per budget (every batch-endpoint call, creates), the time-averaged use of the budget from one
  window after the first call to the last call (meaningful when the limiter binds: many small batches; goal
  >= 97 %), the busiest window against the limit (never over), and the 429s;
- with --verify, also the time until the command exits, its export of the results included (`verify_exit_s`,
  `exit_over_ideal`), which `workers` + `submit` have no counterpart of;
- CPU seconds of our processes beside the wall time (`cpu_s`), and of the simulator from the start on
  (`simulator_cpu_s`): Bouncer's own work, which here shares the machine with the system measured; the peak RSS
  of `verify`: `peak_rss_mb` is the sum
  over its process tree (verify, its embedded Valkey), sampled from /proc every 50 ms; `peak_rss_main_mb` the
  verify process alone (/usr/bin/time -v).

    .venv/bin/python bench/e2e.py                                   # 300,000 emails, speed 500, PostgreSQL
    .venv/bin/python bench/e2e.py --processes 3 --engine sqlite
    .venv/bin/python bench/e2e.py --verify --engine sqlite
    .venv/bin/python bench/e2e.py --emails 30000 --batch-size 100 --window 10    # the limiter binds
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import heapq
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from ingest_submit import delete_keys, write_csv
from sqlalchemy import text
from storage_bulk import fresh_database

from bouncer_queue.config import Settings
from bouncer_queue.storage.db import READ_ONLY_OPTION, make_engine

KEY = "bench-key"
COMMAND = Path(sys.executable).with_name("bouncer-queue")
TIME_V = Path("/usr/bin/time")
BATCH_PATH = "/v1.1/email/verify/batch"
QUEUE_DELAY = 0.5
#: How often the RSS of verify's process tree is sampled (a peak shorter than this can be missed).
RSS_SAMPLE_SECONDS = 0.05
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    wall: float
    #: When every address had its outcome (epoch seconds, the simulator's clock: same machine).
    finished_at: float
    cpu: float
    #: The simulator's CPU seconds from the submit (or verify) start on.
    simulator_cpu: float
    peak_rss_mb: float | None
    main_rss_mb: float | None
    requests: list[dict[str, Any]]
    batches: list[dict[str, Any]]
    #: verify only: until the process exited, its export included (`wall` ends when every address has its outcome).
    exit_wall: float | None = None


def ideal_seconds(sizes: list[int], slots: int, speed: float, create_max: int, window: float) -> float:
    """Bouncer's own time: a batch starts when a slot frees and the create budget allows, runs delay + size/speed."""
    free = [0.0] * slots
    creates: list[float] = []
    for size in sizes:
        start = heapq.heappop(free)
        if len(creates) >= create_max:
            start = max(start, creates[-create_max] + window)
        creates.append(start)
        heapq.heappush(free, start + QUEUE_DELAY + size / speed)
    return max(free)


def saturation(batches: list[dict[str, Any]], slots: int) -> float:
    """Share of slot-time Bouncer spent on our batches between the first and the last create."""
    first, last = min(b["created"] for b in batches), max(b["created"] for b in batches)
    if last <= first:
        return 1.0
    busy = sum(max(0.0, min(b["completed"] or last, last) - b["created"]) for b in batches)
    return busy / (slots * (last - first))


def budget_share(times: list[float], limit: int, window: float) -> tuple[float, int]:
    """(time-averaged use from one window after the first call to the last one, busiest window)."""
    times = sorted(times)
    busiest = max(bisect.bisect_right(times, t) - bisect.bisect_left(times, t - window + 1e-6) for t in times)
    start, end = times[0] + window, times[-1]
    if end <= start:
        return float("nan"), busiest
    samples = [start + (end - start) * i / 1000 for i in range(1001)]
    used = [bisect.bisect_right(times, s) - bisect.bisect_right(times, s - window) for s in samples]
    return sum(used) / (len(used) * limit), busiest


def environment(args: argparse.Namespace, base_url: str, state_dir: Path, url: str, prefix: str) -> dict[str, str]:
    env = {**os.environ, "BOUNCER_API_KEY": KEY, "BOUNCER_API_BASE_URL": base_url, "LOG_JSON": "true"}
    env |= {"BOUNCER_QUEUE_STATE_DIR": str(state_dir), "DATABASE_URL": url, "BATCH_SIZE": str(args.batch_size)}
    env |= {"RATE_LIMIT_WINDOW_SECONDS": str(args.window), "QUEUE_LIMIT_DURATION_MS": str(int(args.window * 1000))}
    if not args.verify:
        env |= {"REDIS_URL": args.redis_url, "QUEUE_PREFIX": prefix}
    return env


async def address_states(url: str) -> dict[str, int]:
    """The addresses by state, read once at the end."""
    engine = make_engine(url).execution_options(**{READ_ONLY_OPTION: True})  # see wait_until_settled
    try:
        async with engine.connect() as conn:
            states = await conn.execute(text('SELECT status, count(*) FROM "Bouncer_Queue" GROUP BY status'))
            return {str(state): int(n) for state, n in states}
    finally:
        await engine.dispose()


async def wait_until_settled(url: str, emails: int, started: float) -> float:
    """Seconds from `started` until every address has its outcome, read as cheaply as verify's own progress bar:
    the batches (a few rows) every 0.1 s, the addresses (one row each) only once no batch is open. Counting the
    addresses every 0.1 s instead (300,000 rows on PostgreSQL) took a good part of a core from the system measured,
    on a 2-core machine."""
    # Read-only: on SQLite a plain transaction begins IMMEDIATE, taking the write lock from verify every 0.1 s.
    engine = make_engine(url).execution_options(**{READ_ONLY_OPTION: True})
    still_open = "CASE WHEN status IN ('downloaded', 'dead', 'cancelled') THEN 0 ELSE 1 END"
    open_batches = text(f'SELECT count(*), sum({still_open}) FROM "Bouncer_Batches"')
    finished = text("SELECT count(*) FROM \"Bouncer_Queue\" WHERE status IN ('completed', 'failed', 'dead')")
    try:
        while True:
            async with engine.connect() as conn:
                total, unclosed = (await conn.execute(open_batches)).one()
                if total and not unclosed and int(await conn.scalar(finished) or 0) >= emails:
                    return time.perf_counter() - started
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


@contextmanager
def simulator(args: argparse.Namespace) -> Iterator[tuple[str, int]]:
    """`bouncer-queue simulator` in a process of its own (its CPU is not ours); yields its root URL and pid."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [str(COMMAND), "simulator", "--port", str(port), "--api-key", KEY, "--speed", str(args.speed)]
    argv += ["--window-seconds", str(args.window), "--credits", str(10**9)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{root}/__simulator/state").raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the simulator did not start") from None
                time.sleep(0.1)
        yield root, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def workers(count: int, env: dict[str, str], logs: Path) -> Iterator[None]:
    procs, files = [], []
    for n in range(count):
        log = (logs / f"workers-{n}.log").open("w")
        files.append(log)
        argv = [str(COMMAND), "workers"]
        if os.environ.get("BQ_E2E_PROFILE"):  # a cProfile of each workers process, for finding where time goes
            argv = [sys.executable, "-m", "cProfile", "-o", f"{os.environ['BQ_E2E_PROFILE']}.{n}", *argv]
        procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        deadline = time.monotonic() + 60
        while not all("workers_started" in (logs / f"workers-{n}.log").read_text() for n in range(count)):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("workers did not start: see " + str(logs))
            time.sleep(0.1)
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
        for log in files:
            log.close()
        if os.environ.get("BQ_E2E_KEEP_LOGS"):
            for n in range(count):
                shutil.copy(logs / f"workers-{n}.log", Path(os.environ["BQ_E2E_KEEP_LOGS"]) / f"workers-{n}.log")


async def run_workers(args: argparse.Namespace, env: dict[str, str], url: str, csv_path: Path) -> float:
    """Seconds from the submit's start until every address has its outcome."""
    with workers(args.processes, env, csv_path.parent):
        started = time.perf_counter()
        subprocess.run([str(COMMAND), "submit", str(csv_path)], env=env, check=True, capture_output=True)
        wall = await wait_until_settled(url, args.emails, started)
        states = await address_states(url)
        if states.get("completed", 0) != args.emails:
            print(f"  not every address completed: {states}", flush=True)
        return wall


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_usage(root: int, *, skip_root: bool = False) -> tuple[int, float]:
    """Resident memory (kB) and CPU seconds of `root` and every descendant (the embedded Valkey, a simulator
    started by verify), from /proc: what the machine gives the command, not only its largest process."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    rss, cpu, todo = 0, 0.0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        if skip_root and pid == root:  # /usr/bin/time, the bench's own wrapper
            continue
        try:
            found = re.search(r"^VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        rss += int(found.group(1)) if found else 0
        cpu += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return rss, cpu


def run_verify(env: dict[str, str], csv_path: Path) -> tuple[float, float, float | None]:
    """(wall, peak RSS of the process tree in MB sampled every RSS_SAMPLE_SECONDS, peak RSS of the verify
    process alone from /usr/bin/time -v, which cannot see its children's sum)."""
    # --force: with --repeat, the run before wrote the same output file (verify never replaces one silently).
    argv = [str(COMMAND), "verify", str(csv_path), "--output", str(csv_path.with_suffix(".out.csv")), "--force"]
    if os.environ.get("BQ_E2E_PROFILE"):  # a cProfile of verify, for finding where its time goes
        argv = [sys.executable, "-m", "cProfile", "-o", os.environ["BQ_E2E_PROFILE"], *argv]
    if TIME_V.exists():
        argv = [str(TIME_V), "-v", *argv]
    trace = Path(os.environ["BQ_E2E_RSS_TRACE"]).open("w") if os.environ.get("BQ_E2E_RSS_TRACE") else None
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        peak_kb = 0
        while proc.poll() is None:
            sample, cpu = tree_usage(proc.pid, skip_root=TIME_V.exists())
            peak_kb = max(peak_kb, sample)
            if trace is not None:  # seconds since start, tree RSS in MB, CPU s: where memory peaks, time goes
                trace.write(f"{time.perf_counter() - started:.2f} {sample / 1024:.1f} {cpu:.2f}\n")
            time.sleep(RSS_SAMPLE_SECONDS)
        if trace is not None:
            trace.close()
        wall = time.perf_counter() - started
        err.seek(0)
        stderr = err.read()
    if os.environ.get("BQ_E2E_KEEP_LOGS"):
        (Path(os.environ["BQ_E2E_KEEP_LOGS"]) / "verify.log").write_text(stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"verify failed ({proc.returncode}):\n{stderr[-3000:]}")
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    alone = int(found.group(1)) / 1024 if found else None
    return wall, peak_kb / 1024, alone


async def one_run(args: argparse.Namespace, csv_path: Path) -> Run:
    server_url = args.postgres_url if args.engine == "postgresql" else None
    prefix = f"{{bqe2e-{uuid.uuid4().hex[:10]}}}"
    state_dir = Path(tempfile.mkdtemp(prefix="bq_e2e_state_"))
    with simulator(args) as (root, simulator_pid):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        simulator_before = process_cpu(simulator_pid)
        async with fresh_database(args.engine, server_url) as url:
            env = environment(args, f"{root}/v1.1", state_dir, url, prefix)
            rss = main_rss = exit_wall = None
            finished_at = 0.0
            try:
                if args.verify:
                    started = time.perf_counter()
                    settled = asyncio.create_task(wait_until_settled(url, args.emails, started))
                    try:
                        exit_wall, rss, main_rss = await asyncio.to_thread(run_verify, env, csv_path)
                    finally:
                        if not settled.done():  # verify exited (or failed) before the poll saw the last outcome
                            settled.cancel()
                    wall = exit_wall
                    if settled.done() and not settled.cancelled():
                        if settled.exception() is not None:
                            print(f"  the outcome poll failed ({settled.exception()}): wall is to the exit", flush=True)
                        else:
                            wall = settled.result()
                    finished_at = time.time() - (time.perf_counter() - started - wall)  # the last outcome's time
                else:
                    wall = await run_workers(args, env, url, csv_path)
                    finished_at = time.time()
            finally:
                if not args.verify:
                    await delete_keys(args.redis_url, prefix)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        async with httpx.AsyncClient(base_url=root) as client:
            requests = (await client.get("/__simulator/requests")).json()
            batches = (await client.get("/__simulator/state")).json()["batches"]
        simulator_cpu = process_cpu(simulator_pid) - simulator_before
    shutil.rmtree(state_dir, ignore_errors=True)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return Run(wall, finished_at, cpu, simulator_cpu, rss, main_rss, requests, batches, exit_wall)


def figures(args: argparse.Namespace, run: Run) -> dict[str, Any]:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    slots = settings.max_concurrent_batches
    sizes = [args.batch_size] * (args.emails // args.batch_size) + ([args.emails % args.batch_size] or [])
    sizes = [s for s in sizes if s]
    # Every batch costs at least three batch-endpoint calls (create, a status, a download): that bounds creates too.
    create_rate = min(settings.rate_limit_create_max, settings.rate_limit_max // 3)
    ideal = ideal_seconds(sizes, slots, args.speed, create_rate, args.window)
    api = [r for r in run.requests if r["path"].startswith(BATCH_PATH)]
    creates = [r for r in api if r["method"] == "POST" and r["path"] == BATCH_PATH]
    window = args.window
    batch_share, batch_busiest = budget_share([r["time"] for r in api], settings.rate_limit_max, window)
    create_share, create_busiest = budget_share([r["time"] for r in creates], settings.rate_limit_create_max, window)
    first_create = min((r["time"] for r in creates), default=run.finished_at)
    return {
        "wall_s": round(run.wall, 2),
        "ideal_s": round(ideal, 2),
        "wall_over_ideal": round(run.wall / ideal, 3),
        # The same from the first create on: what the batch pipeline itself adds, without ingest before it.
        "after_first_create_over_ideal": round((run.finished_at - first_create) / ideal, 3),
        # From the submit (or verify) start to the first create at the simulator: how soon Bouncer gets work.
        "first_create_s": round(first_create - (run.finished_at - run.wall), 2),
        "slot_saturation": round(saturation(run.batches, slots), 3),
        "batch_budget_share": round(batch_share, 3),
        "batch_busiest_window": f"{batch_busiest}/{settings.rate_limit_max}",
        "create_budget_share": round(create_share, 3),
        "create_busiest_window": f"{create_busiest}/{settings.rate_limit_create_max}",
        "http_429": sum(1 for r in run.requests if r["status"] == 429),
        "batches_created": len(creates),
        "status_calls": sum(1 for r in api if r["method"] == "GET" and not r["path"].endswith("/download")),
        "cpu_s": round(run.cpu, 2),
        "simulator_cpu_s": round(run.simulator_cpu, 2),
        "verify_exit_s": round(run.exit_wall, 2) if run.exit_wall is not None else None,
        "exit_over_ideal": round(run.exit_wall / ideal, 3) if run.exit_wall is not None else None,
        "peak_rss_mb": round(run.peak_rss_mb, 1) if run.peak_rss_mb is not None else None,
        "peak_rss_main_mb": round(run.main_rss_mb, 1) if run.main_rss_mb is not None else None,
    }


async def main_async(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bq_e2e_"))
    try:
        csv_path = workdir / "list.csv"
        write_csv(csv_path, args.emails)
        mode = "verify" if args.verify else f"{args.processes} workers process(es) + submit"
        print(f"{args.emails:,} emails, batches of {args.batch_size:,}, speed {args.speed:g}/s, window "
              f"{args.window:g} s, {args.engine}, {mode}", flush=True)  # fmt: skip
        results = []
        for _ in range(args.repeat):
            run = await one_run(args, csv_path)
            results.append(figures(args, run))
            if args.dump:
                args.dump.write_text(json.dumps({"requests": run.requests, "batches": run.batches, "wall": run.wall}))
            print(json.dumps(results[-1]), flush=True)
        if args.repeat > 1:
            keys = ("wall_over_ideal", "after_first_create_over_ideal", "slot_saturation", "batch_budget_share")
            keys += ("create_budget_share", "cpu_s", "simulator_cpu_s", "first_create_s")
            print("median", json.dumps({k: statistics.median(r[k] for r in results) for k in keys}))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=300_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--speed", type=float, default=500.0, help="addresses a second per batch at the simulator")
    parser.add_argument("--window", type=float, default=60.0, help="rate-limit window, ours and the simulator's")
    parser.add_argument("--processes", type=int, default=1, help="`bouncer-queue workers` processes")
    parser.add_argument("--verify", action="store_true", help="run `bouncer-queue verify FILE` instead")
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the medians are printed too")
    parser.add_argument("--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--dump", type=Path, help="write the simulator's log and batches of the last run here")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
