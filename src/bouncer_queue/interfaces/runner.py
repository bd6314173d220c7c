"""What the long-running commands do, apart from parsing: run workers, submit a list, wait, export, verify.

`verify` is the main job in one command: it starts whatever is missing (the embedded Valkey and SQLite come
from open_runtime; the simulator when no API key is set), runs the workers in this process, submits the list,
shows progress, writes the results beside the input and prints a summary. Run again on the same content (and
the same result-shaping options) with the same database, it resumes the request it made before instead of
verifying, and paying for, the list twice; `--new` starts a fresh one. If Bouncer refuses the API key, it stops
with an error and writes no results file. The typer commands in cli.py stay thin and call these.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bouncer_queue.config import Settings
from bouncer_queue.credits.estimate import Estimate
from bouncer_queue.credits.reservations import CreditLimit
from bouncer_queue.domain import Priority, RequestState
from bouncer_queue.errors import ConfigError, DatabaseUnavailable, Interrupted, QueueBackendError
from bouncer_queue.lists import ListReader, default_output_path, read_list, write_export
from bouncer_queue.ops.keys import ApiKeySource
from bouncer_queue.pipeline.ingest import AddResult, CreditOptions
from bouncer_queue.queueing.signals import on_reload, on_stop
from bouncer_queue.service import QueueManager
from bouncer_queue.storage.records import RequestProgress
from bouncer_queue.workers import run_workers

log = logging.getLogger(__name__)

#: Poll interval used against the local simulator, which finishes batches in seconds, not minutes.
SIMULATOR_POLL_SECONDS = 1.0


@dataclass
class SubmitOptions:
    """What `submit` and `verify` take besides the file."""

    user_id: str = "cli"
    request_id: str | None = None
    priority: Priority = Priority.NORMAL
    delay_ms: int = 0
    column: str | None = None
    max_rows: int | None = None
    encoding: str | None = None
    #: verify only: make a new request even when this list was submitted before.
    new: bool = False

    def fingerprint(self, path: Path) -> str:
        """sha256 of the file's bytes, of the options that decide which rows are read (column, encoding, row
        limit) and of the user: the same list read the same way for the same user gets the same fingerprint."""
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        shaping = {"column": self.column, "encoding": self.encoding, "max_rows": self.max_rows, "user": self.user_id}
        digest.update(json.dumps(shaping, sort_keys=True).encode())
        return digest.hexdigest()

    #: Refuse when the list needs more credits than this (or than are available), unless `allow_partial`.
    max_credits: int | None = None
    allow_partial: bool = False
    #: Reuse answers from earlier requests (RESULT_CACHE_DAYS); `--no-cache` turns it off for one request.
    use_cache: bool = True


@dataclass
class Submitted:
    """A submitted list: the request, what the reader skipped, and what it was estimated to cost."""

    result: AddResult
    skipped: int
    skipped_examples: list[str] = field(default_factory=list)
    estimate: Estimate | None = None


def _reader(path: Path, options: SubmitOptions) -> ListReader:
    return read_list(path, column=options.column, max_rows=options.max_rows, encoding=options.encoding)


async def estimate_file(manager: QueueManager, path: Path, options: SubmitOptions) -> Estimate:
    """What the list will cost, read exactly as submit_file reads it; stores nothing."""
    reader = _reader(path, options)
    return await manager.estimate(reader, lambda: reader.skipped_total, use_cache=options.use_cache)


async def submit_file(
    manager: QueueManager,
    path: Path,
    options: SubmitOptions,
    console: Console | None = None,
    *,
    fingerprint: str | None = None,
) -> Submitted:
    """Read a list file as a stream and add it to the queues. Its credits are checked in the transaction that
    stores it (a refusal stores nothing), and its cost is printed to `console` before its first batch is queued."""
    balance = await manager.credit_balance()
    limit = CreditLimit(balance.checked_at, balance.at_bouncer, options.max_credits, options.allow_partial)
    cache_days = manager.settings.result_cache_days if options.use_cache else 0
    reader = _reader(path, options)
    estimates: list[Estimate] = []

    async def stored(request_id: str) -> None:
        estimates.append(await manager.stored_estimate(request_id, reader.skipped_total, balance))
        if console is not None:
            for line in estimates[0].lines():
                console.print(line, highlight=False)

    result = await manager.add_emails_to_queue(
        reader,
        options.user_id,
        options.request_id,
        priority=options.priority,
        delay=options.delay_ms,
        fingerprint=fingerprint,
        source=path.name,
        credits=CreditOptions(cache_days=cache_days, check=limit),
        on_stored=stored,
    )
    examples = [f"row {s.row_number}: {s.reason}" for s in reader.skipped[:5]]
    return Submitted(result, reader.skipped_total, examples, estimates[0] if estimates else None)


async def wait_for_request(
    manager: QueueManager, request_id: str, console: Console, *, interval: float = 0.5
) -> RequestProgress:
    """Show a progress bar until every address of the request has an outcome; wait out a database outage."""
    progress_bar = Progress(
        TextColumn("[bold]verifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    with progress_bar:
        task = progress_bar.add_task("verify", total=None, detail="")
        while True:
            try:
                progress = await manager.request_progress(request_id)
            except DatabaseUnavailable:  # a pause, as for the workers: wait for the database to answer again
                progress_bar.update(task, detail="waiting for the database")
                await asyncio.sleep(interval)
                continue
            batches = ", ".join(f"{n} {s}" for s, n in sorted(progress.batches_by_state.items()))
            money = f"credits: {progress.credits_spent} spent, {progress.credits_to_spend} to spend"
            detail = f"batches: {batches}; {money}"
            progress_bar.update(task, total=progress.emails_total, completed=progress.finished, detail=detail)
            if progress.done:
                return progress
            await asyncio.sleep(interval)


async def export_results(
    manager: QueueManager, request_id: str, out_path: Path | None, fmt: str, statuses: set[str] | None
) -> tuple[int, Counter[str]]:
    """Write a request's rows joined with their results; returns the row count and counts by status."""
    counts: Counter[str] = Counter()

    async def counted() -> AsyncIterator[object]:
        async for row in manager.export(request_id, statuses):
            counts[row.status or row.state] += 1
            yield row

    if out_path is None:
        import sys

        written = await write_export(counted(), sys.stdout, fmt)  # type: ignore[arg-type]
        return written, counts
    tmp = out_path.with_name(out_path.name + ".part")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        written = await write_export(counted(), handle, fmt)  # type: ignore[arg-type]
    tmp.replace(out_path)  # nothing half-written: the file appears whole or not at all
    return written, counts


@dataclass
class BackgroundWorkers:
    """Workers running in a task of this process: set `stop` to end them; `task` ends early only on failure."""

    stop: asyncio.Event
    task: asyncio.Task[None]


@asynccontextmanager
async def running_workers(manager: QueueManager) -> AsyncIterator[BackgroundWorkers]:
    """Workers in a background task of this process; stopped (gracefully) on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_workers(manager, stop), name="workers")
    try:
        yield BackgroundWorkers(stop, task)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def serve_workers(settings: Settings, banner: Callable[[], None], keys: ApiKeySource) -> None:
    """`bouncer-queue workers`: run until SIGINT/SIGTERM (a second one forces); SIGHUP reloads the API key."""
    stop = asyncio.Event()
    async with QueueManager(settings, api_key=keys) as manager:
        banner()
        with on_stop(stop.set), on_reload(keys.reload):
            await run_workers(manager, stop)


@contextmanager
def simulator_if_no_key(settings: Settings, console: Console) -> Iterator[Settings]:
    """With no API key configured, start the local simulator and point the settings at it."""
    if settings.api_key() is not None:
        yield settings
        return
    from bouncer_queue.simulator import SimulatorConfig, SimulatorServer

    config = SimulatorConfig(speed=5_000.0, api_keys=("simulator-demo-key",))
    with SimulatorServer(config) as server:
        console.print(
            "[yellow]BOUNCER_API_KEY is not set: verifying against the local Bouncer simulator at "
            f"{server.base_url}. Results are simulated; no credits are spent.[/yellow]"
        )
        yield settings.model_copy(
            update={
                "bouncer_api_base_url": server.base_url,
                "bouncer_api_key": SecretStr("simulator-demo-key"),
                "bouncer_api_key_file": None,
                "poll_interval_seconds": min(settings.poll_interval_seconds, SIMULATOR_POLL_SECONDS),
            }
        )


async def _until_done(manager: QueueManager, request_id: str, console: Console, workers: BackgroundWorkers) -> None:
    """Wait for the request; a signal ends the wait (Interrupted), and so does a failure of the workers
    (its error is raised), or Bouncer refusing the key (ConfigError), so verify never waits on nothing."""
    waiter = asyncio.create_task(wait_for_request(manager, request_id, console))
    stopper = asyncio.create_task(workers.stop.wait())
    refused = asyncio.create_task(_until_key_refused(manager))
    done, _ = await asyncio.wait({waiter, stopper, refused, workers.task}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    refused.cancel()
    if waiter in done:
        waiter.result()  # the request is done (or reading its progress failed: that error goes up)
        return
    waiter.cancel()
    if refused in done:
        raise ConfigError(
            f"Bouncer refused the API key ({refused.result()}). Nothing was dead-lettered and no results file was "
            f"written: set a valid key and run verify again, which resumes request {request_id}."
        )
    if workers.task in done:
        workers.task.result()  # raises the workers' error
        raise QueueBackendError("the workers stopped before the list was verified")
    raise Interrupted


async def _until_key_refused(manager: QueueManager, interval: float = 0.5) -> str:
    """Return why, as soon as the auth gate closes (Bouncer answered 401 or 403 to the key in force)."""
    while (reason := await manager.api_key_refused()) is None:
        await asyncio.sleep(interval)
    return reason


async def _resume_or_submit(
    manager: QueueManager, path: Path, options: SubmitOptions, console: Console
) -> tuple[str, int, int]:
    """The request of an earlier run of this list (unless `options.new`), or a new one: (id, rows, skipped)."""
    fingerprint = options.fingerprint(path)
    earlier = None if options.new else await manager.find_request(fingerprint)
    if earlier is not None and earlier.status != RequestState.CANCELLED:
        done = earlier.status == RequestState.FINISHED
        console.print(
            f"this list was submitted before as request [bold]{earlier.request_id}[/bold] "
            f"({earlier.total_emails} addresses): {'writing its results again' if done else 'resuming it'}; "
            "use --new to verify it again",
            highlight=False,
        )
        return earlier.request_id, earlier.total_emails, 0
    submitted = await submit_file(manager, path, options, console, fingerprint=fingerprint)
    result = submitted.result
    console.print(
        f"request [bold]{result.request_id}[/bold]: {result.total_emails} addresses in "
        f"{result.batch_count} batches ({submitted.skipped} rows skipped)"
    )
    return result.request_id, result.total_emails, submitted.skipped


@dataclass
class VerifyOutcome:
    """What `verify` did, for its summary."""

    request_id: str
    total: int
    skipped: int
    output: Path
    by_status: Counter[str]


async def verify_file(
    settings: Settings,
    path: Path,
    options: SubmitOptions,
    console: Console,
    output: Path | None = None,
    keys: ApiKeySource | None = None,
) -> VerifyOutcome:
    """The main job: workers in-process, submit, wait with a progress bar, export beside the input."""
    out_path = output or default_output_path(path, "csv")
    # verify is the one-command job: it brings any database it is pointed at to the current schema itself.
    manager = QueueManager(settings, api_key=keys, auto_migrate=True)
    async with manager, running_workers(manager) as workers:
        with on_stop(workers.stop.set):
            request_id, total, skipped = await _resume_or_submit(manager, path, options, console)
            await _until_done(manager, request_id, console, workers)
        _, counts = await export_results(manager, request_id, out_path, "csv", None)
    return VerifyOutcome(request_id, total, skipped, out_path, counts)
