"""What the long-running commands do, apart from parsing: run workers, submit a list, wait, export, verify.

`verify` is the main job in one command: it starts whatever is missing (the embedded Valkey and SQLite come
from open_runtime; the simulator when no API key is set), submits the list, runs the workers in this process,
shows progress, writes the results beside the input and prints a summary. Run again on the same content (and
the same result-shaping options) with the same database, it resumes the request it made before instead of
verifying, and paying for, the list twice; `--new` starts a fresh one. If Bouncer refuses the API key, it stops
with an error and writes no results file. The typer commands in cli.py stay thin and call these.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from pydantic import SecretStr
from rich.console import Console
from rich.progress import Progress, TaskID

from bouncer_queue.aio import cancel_and_wait
from bouncer_queue.config import Settings
from bouncer_queue.credits.estimate import Estimate
from bouncer_queue.domain import Priority, RequestState
from bouncer_queue.errors import ConfigError, DatabaseUnavailable, InputError, Interrupted, QueueBackendError
from bouncer_queue.files import open_private
from bouncer_queue.interfaces.common import err_console
from bouncer_queue.interfaces.progress import UPDATE_EVERY_ROWS, counter_bar, counting, ratio_bar
from bouncer_queue.lists import (
    ExportFormat,
    ListReader,
    default_output_path,
    export_format_for,
    read_list,
    write_export,
    write_xlsx,
)
from bouncer_queue.ops import malloc
from bouncer_queue.ops.keys import ApiKeySource
from bouncer_queue.pipeline.ingest import AddResult
from bouncer_queue.queueing.signals import on_reload, on_stop
from bouncer_queue.service import QueueManager
from bouncer_queue.storage.records import BatchProgress, ExportRow, RequestProgress
from bouncer_queue.workers import run_workers

log = logging.getLogger(__name__)

#: glibc malloc arenas `verify` may use, and how often it gives freed memory back (ops/malloc.py): the whole
#: job runs in one process with a thread per SQLite connection, and at 1,000,000 addresses the default arenas
#: (eight per core) kept about 40 MB more resident than two did (docs/benchmarks.md).
VERIFY_MALLOC_ARENAS = 2
TRIM_SECONDS = 1.0
#: Downloads `verify` decodes and stores at once, and creates it sends at once (see verify_settings).
VERIFY_DOWNLOAD_CONCURRENCY = 1
VERIFY_CREATE_CONCURRENCY = 5

#: Poll interval used against the local simulator, which finishes batches in seconds, not minutes.
SIMULATOR_POLL_SECONDS = 1.0


@dataclass
class SubmitOptions:
    """What `submit` and `verify` take besides the file: who and how urgently, and how to read the list."""

    user_id: str = "cli"
    request_id: str | None = None
    priority: Priority = Priority.NORMAL
    delay_ms: int = 0
    column: str | None = None
    max_rows: int | None = None
    encoding: str | None = None
    header: bool = True
    sheet: str | None = None
    input_format: str | None = None
    #: verify only: make a new request even when this list was submitted before.
    new: bool = False
    #: Refuse when the list needs more credits than this (or than are available), unless `allow_partial`.
    max_credits: int | None = None
    allow_partial: bool = False
    #: Reuse answers from earlier requests (RESULT_CACHE_DAYS); `--no-cache` turns it off for one request.
    use_cache: bool = True

    def fingerprint(self, path: Path) -> str:
        """sha256 of the file's bytes, of the options that decide which rows are read (column, header, sheet,
        format, encoding, row limit) and of the user: the same list read the same way for the same user gets the
        same fingerprint."""
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        shaping = {"column": self.column, "encoding": self.encoding, "max_rows": self.max_rows, "user": self.user_id}
        if not self.header or self.sheet is not None or self.input_format is not None:
            # Only when used, so the fingerprints of lists stored before these options existed stay the same.
            shaping |= {"header": self.header, "sheet": self.sheet, "input_format": self.input_format}
        digest.update(json.dumps(shaping, sort_keys=True).encode())
        return digest.hexdigest()


@dataclass
class Submitted:
    """A submitted list: the request, the rows without an address (stored as `skipped`), and what it was
    estimated to cost."""

    result: AddResult
    skipped: int
    skipped_summary: str = ""
    estimate: Estimate | None = None


def open_list(path: Path, options: SubmitOptions) -> ListReader:
    """The list's reader; rows without an address are kept (as skipped rows) so the export gives them back."""
    return read_list(
        path,
        column=options.column,
        fmt=options.input_format,
        max_rows=options.max_rows,
        encoding=options.encoding,
        header=options.header,
        sheet=options.sheet,
        keep_skipped=True,
    )


async def estimate_file(manager: QueueManager, path: Path, options: SubmitOptions) -> Estimate:
    """What the list will cost, read exactly as submit_file reads it; stores nothing."""
    reader = open_list(path, options)
    with counter_bar(err_console, "reading the list") as bar:
        return await manager.estimate(counting(reader, bar), lambda: reader.skipped_total, use_cache=options.use_cache)


async def submit_file(
    manager: QueueManager,
    path: Path,
    options: SubmitOptions,
    console: Console | None = None,
    *,
    fingerprint: str | None = None,
    interrupt: Callable[[], object] | None = None,
    read_ahead: bool = True,
) -> Submitted:
    """Read a list file as a stream and add it to the queues chunk by chunk, with a count on stderr while it is
    stored. Its credits are checked with each chunk (a refusal stops the list there), and its cost is printed to
    `console` once the whole list is stored. `interrupt` is called every few rows read and may raise to stop the
    list there, as a refusal does (the chunks committed before stay, resumable). `read_ahead`: read the next
    chunk while one is stored (off in `verify`, where it cost 4 MB of a peak that is its memory budget)."""
    credits, balance = await manager.credit_options(
        max_credits=options.max_credits, allow_partial=options.allow_partial, use_cache=options.use_cache
    )
    reader = open_list(path, options)
    estimates: list[Estimate] = []
    bar = counter_bar(err_console, "storing the list")

    async def stored(request_id: str) -> None:
        bar.stop()  # the list is stored: the count is done, and the estimate must not print over it
        estimates.append(await manager.stored_estimate(request_id, reader.skipped_total, balance))
        if console is not None:
            for line in estimates[0].lines():
                console.print(line, highlight=False)

    with bar:
        result = await manager.add_emails_to_queue(
            counting(reader, bar, interrupt),
            options.user_id,
            options.request_id,
            priority=options.priority,
            delay=options.delay_ms,
            fingerprint=fingerprint,
            source=path.name,
            credits=credits,
            on_stored=stored,
            read_ahead=read_ahead,
        )
    return Submitted(result, reader.skipped_total, reader.skipped_summary, estimates[0] if estimates else None)


#: How often `submit --wait` looks for live workers while nothing moves.
WORKERS_CHECK_SECONDS = 5.0
NO_WORKERS = (
    "[yellow]no workers are running: the request waits in the queue until `bouncer-queue workers` is started[/yellow]"
)


#: Longest time `wait_for_request` shows counts read from the batches alone before it counts the addresses.
EXACT_COUNT_SECONDS = 10.0


async def wait_for_request(
    manager: QueueManager, request_id: str, *, interval: float = 0.5, check_workers: bool = False
) -> RequestProgress:
    """Show a progress bar (stderr) until every address of the request has an outcome; wait out a database
    outage. With `check_workers`, say so once when no worker is alive (nothing would ever move).

    Each `interval` it reads the request's batches (a few rows); the addresses, one row each, are counted only
    when no batch is open any more, and every EXACT_COUNT_SECONDS: at a million addresses that count costs a
    third of a second, which twice a second was most of `verify`'s CPU. Between two counts the bar shows the
    addresses outside open batches as finished."""
    checked_at = -WORKERS_CHECK_SECONDS
    warned = False
    exact: RequestProgress | None = None
    counted_at = 0.0
    with ratio_bar(err_console, "verifying") as bar:
        task = bar.add_task("verify", total=None, detail="")
        while True:
            try:
                batches = await manager.batch_progress(request_id)
                now = time.monotonic()
                if exact is None or batches.open_batches == 0 or now - counted_at >= EXACT_COUNT_SECONDS:
                    exact, counted_at = await manager.request_progress(request_id), now
            except DatabaseUnavailable:  # a pause, as for the workers: wait for the database to answer again
                bar.update(task, detail="waiting for the database")
                await asyncio.sleep(interval)
                continue
            if exact.done:
                _show(bar, task, exact.emails_total, exact.finished, batches)
                return exact
            # Never shown as done before the count says so, nor as going back.
            outside_open = max(exact.finished, exact.emails_total - batches.open_quantity)
            _show(bar, task, exact.emails_total, max(0, min(outside_open, exact.emails_total - 1)), batches)
            if check_workers and not warned and now - checked_at >= WORKERS_CHECK_SECONDS:
                checked_at = now
                if await manager.live_worker_count() == 0:
                    err_console.print(NO_WORKERS)
                    warned = True
            await asyncio.sleep(interval)


def _show(bar: Progress, task: TaskID, total: int, finished: int, batches: BatchProgress) -> None:
    states = ", ".join(f"{n} {s}" for s, n in sorted(batches.batches_by_state.items()))
    money = f"credits: {batches.credits_spent} spent, {batches.credits_to_spend} to spend"
    bar.update(task, total=total, completed=finished, detail=f"batches: {states}; {money}")


def check_output(path: Path, force: bool) -> None:
    """Refuse to replace an existing file unless `force`: results are worth more than a typo in a name."""
    if path.is_dir():
        raise InputError(f"{path} is a directory; give --output a file name")
    if path.exists() and not force:
        raise InputError(f"{path} already exists; pass --force to replace it, or --output to write elsewhere")


async def export_results(
    manager: QueueManager,
    request_id: str,
    out_path: Path | None,
    fmt: ExportFormat,
    statuses: set[str] | None,
    *,
    force: bool = False,
) -> tuple[int, Counter[str]]:
    """Write a request's rows joined with their results (stdout when `out_path` is None); returns the row count
    and counts by status. The file is written beside its target and renamed, so it appears whole or not at all,
    readable by its owner only (0600, unless the umask is stricter)."""
    counts: Counter[str] = Counter()
    bar = counter_bar(err_console, "exporting")
    task = bar.add_task("export", total=None)

    async def counted() -> AsyncIterator[ExportRow]:
        seen = 0
        async for row in manager.export(request_id, statuses):
            counts[row.status or row.state] += 1
            seen += 1
            if seen % UPDATE_EVERY_ROWS == 0:
                bar.update(task, completed=seen)
            yield row

    with bar:
        if out_path is None:
            written = await _write(counted(), sys.stdout, None, fmt)
            return written, counts
        check_output(out_path, force)
        tmp = out_path.with_name(out_path.name + ".part")
        with open_private(tmp, binary=fmt == "xlsx") as handle:
            written = await _write(counted(), handle, tmp, fmt)
        tmp.replace(out_path)
    return written, counts


async def _write(rows: AsyncIterator[ExportRow], handle: TextIO, path: Path | None, fmt: ExportFormat) -> int:
    if fmt == "xlsx":
        if path is None:
            raise InputError("an .xlsx workbook cannot be written to standard output; pass --output FILE.xlsx")
        return await write_xlsx(rows, path)
    return await write_export(rows, handle, fmt)


@dataclass
class BackgroundWorkers:
    """Workers running in a task of this process: set `stop` to end them; `task` ends early only on failure."""

    stop: asyncio.Event
    task: asyncio.Task[None]

    def interrupt(self) -> None:
        """Raise Interrupted once `stop` is set: what verify checks while it stores the list."""
        if self.stop.is_set():
            raise Interrupted


@asynccontextmanager
async def running_workers(manager: QueueManager, stop: asyncio.Event | None = None) -> AsyncIterator[BackgroundWorkers]:
    """Workers in a background task of this process until `stop` is set; stopped (gracefully) on exit. An error
    that ends the block is the one raised: a failure of the workers meanwhile is logged, not put in its place."""
    stop = stop or asyncio.Event()
    task = asyncio.create_task(run_workers(manager, stop), name="workers")
    try:
        yield BackgroundWorkers(stop, task)
    except BaseException as exc:
        stop.set()
        await _workers_ended(task, exc)
        raise
    stop.set()
    await _workers_ended(task, None)


async def _workers_ended(task: asyncio.Task[None], raised: BaseException | None) -> None:
    """Wait for the workers' task to end; its error is raised, unless another (`raised`) is already on its way."""
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception as exc:
        if raised is None:
            raise
        if exc is not raised:
            log.warning("the workers stopped with an error: %s", exc, extra={"action": "workers_failed"})


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


async def _until_done(manager: QueueManager, request_id: str, workers: BackgroundWorkers) -> None:
    """Wait for the request; a signal ends the wait (Interrupted), and so does a failure of the workers
    (its error is raised), or Bouncer refusing the key (ConfigError), so verify never waits on nothing."""
    waiter = asyncio.create_task(wait_for_request(manager, request_id))
    stopper = asyncio.create_task(workers.stop.wait())
    refused = asyncio.create_task(_until_key_refused(manager))
    done, _ = await asyncio.wait({waiter, stopper, refused, workers.task}, return_when=asyncio.FIRST_COMPLETED)
    await cancel_and_wait(stopper, refused, *(() if waiter in done else (waiter,)))
    if waiter in done:
        waiter.result()  # the request is done (or reading its progress failed: that error goes up)
        return
    if refused in done:
        raise ConfigError(
            f"Bouncer refused the API key ({refused.result()}). Nothing was dead-lettered and no results file was "
            f"written: set a valid key and run verify again, which resumes request {request_id}."
        )
    if workers.task in done and not workers.stop.is_set():  # set: they ended on a signal, which is the news
        workers.task.result()  # raises the workers' error
        raise QueueBackendError("the workers stopped before the list was verified")
    raise Interrupted


async def _until_key_refused(manager: QueueManager, interval: float = 0.5) -> str:
    """Return why, as soon as the auth gate closes (Bouncer answered 401 or 403 to the key in force)."""
    while (reason := await manager.api_key_refused()) is None:
        await asyncio.sleep(interval)
    return reason


async def _resume_or_submit(
    manager: QueueManager,
    path: Path,
    options: SubmitOptions,
    console: Console,
    interrupt: Callable[[], object] | None = None,
) -> tuple[str, int, int, str]:
    """The request of an earlier run of this list (unless `options.new`), or a new one: (id, rows, skipped,
    the skipped rows for people); `interrupt` as for submit_file."""
    fingerprint = options.fingerprint(path)
    earlier = None if options.new else await manager.find_request(fingerprint)
    if earlier is not None and earlier.status == RequestState.INGESTING:
        # Its list was not stored whole (a crash, an error, a refusal): store the rest under the same request.
        console.print(
            f"this list was being stored as request [bold]{earlier.request_id}[/bold]: storing the rest of it",
            highlight=False,
        )
        options = replace(options, request_id=earlier.request_id)
    elif earlier is not None and earlier.status != RequestState.CANCELLED:
        done = earlier.status == RequestState.FINISHED
        console.print(
            f"this list was submitted before as request [bold]{earlier.request_id}[/bold] "
            f"({earlier.total_emails} addresses): {'writing its results again' if done else 'resuming it'}; "
            "use --new to verify it again",
            highlight=False,
        )
        return earlier.request_id, earlier.total_emails, 0, ""
    # verify's workers share this process: the chunk read ahead would sit in memory beside their creates and
    # downloads, at the peak that is verify's memory budget (200 MB at a million addresses).
    submitted = await submit_file(
        manager, path, options, console, fingerprint=fingerprint, interrupt=interrupt, read_ahead=False
    )
    result = submitted.result
    console.print(
        f"request [bold]{result.request_id}[/bold]: {result.total_emails} addresses in "
        f"{result.batch_count} batches ({submitted.skipped} rows skipped)"
    )
    return result.request_id, result.total_emails, submitted.skipped, submitted.skipped_summary


@dataclass
class VerifyOutcome:
    """What `verify` did, for its summary."""

    request_id: str
    total: int
    skipped: int
    output: Path
    by_status: Counter[str]
    skipped_summary: str = ""


@dataclass
class OutputOptions:
    """Where and how `verify` writes its results: beside the input in the input's format unless told."""

    path: Path | None = None
    fmt: ExportFormat | None = None
    force: bool = False

    def resolve(self, source: Path) -> tuple[Path, ExportFormat]:
        fmt = self.fmt or (export_format_for(self.path) if self.path is not None else export_format_for(source))
        return self.path or default_output_path(source, fmt), fmt


async def preflight(path: Path, options: SubmitOptions, output: OutputOptions) -> None:
    """verify's checks that need nothing started: the output may be written, the list's options make sense."""
    out_path, _ = output.resolve(path)
    check_output(out_path, output.force)
    open_list(path, options)


def verify_settings(settings: Settings) -> Settings:
    """verify's workers share one process and its memory: one download and VERIFY_CREATE_CONCURRENCY creates at
    a time unless told otherwise (BATCH_DOWNLOAD_CONCURRENCY, EMAIL_VERIFICATION_CONCURRENCY). Decoding and
    storing a download is CPU work in this one process, so more at once stored no faster, and each held its body,
    its decoded rows and their database rows at the same time; a create holds its batch's addresses and body."""
    update: dict[str, int] = {}
    if "batch_download_concurrency" not in settings.model_fields_set:
        update["batch_download_concurrency"] = VERIFY_DOWNLOAD_CONCURRENCY
    if "email_verification_concurrency" not in settings.model_fields_set:
        update["email_verification_concurrency"] = min(
            settings.email_verification_concurrency, VERIFY_CREATE_CONCURRENCY
        )
    return settings.model_copy(update=update) if update else settings


async def verify_file(
    settings: Settings,
    path: Path,
    options: SubmitOptions,
    console: Console,
    output: OutputOptions | None = None,
    keys: ApiKeySource | None = None,
) -> VerifyOutcome:
    """The main job: workers in-process, submit, wait with a progress bar, export beside the input."""
    output = output or OutputOptions()
    await preflight(path, options, output)  # before any credit is spent, not after
    # Before the runtime starts its threads (one per SQLite connection): see ops/malloc.py.
    malloc.cap_arenas(VERIFY_MALLOC_ARENAS)
    trimmer = asyncio.create_task(malloc.trim_every(TRIM_SECONDS), name="malloc-trim")
    try:
        return await _verify(settings, path, options, console, output, keys)
    finally:
        await cancel_and_wait(trimmer)


async def _verify(
    settings: Settings,
    path: Path,
    options: SubmitOptions,
    console: Console,
    output: OutputOptions,
    keys: ApiKeySource | None,
) -> VerifyOutcome:
    out_path, fmt = output.resolve(path)
    force = output.force
    settings = verify_settings(settings)
    # verify is the one-command job: it brings any database it is pointed at to the current schema itself.
    manager = QueueManager(settings, api_key=keys, auto_migrate=True)
    stop = asyncio.Event()
    async with manager:
        # What lives now (the imported code, the runtime) lives to the end: kept out of the cyclic collector's
        # full passes, which otherwise walk it again and again while a million rows go by (about a tenth of
        # the export's CPU).
        gc.collect()
        gc.freeze()
        # The workers first, then the list: each chunk's batch leaves for Bouncer as soon as it is committed, not
        # once the whole list is stored. A list that fails to read, a refused request or a signal ends the block
        # with its error (a signal at the next rows read); the workers stop gracefully on the way out, and what
        # was stored stays as it would without them: committed chunks are resumed by the next run.
        with on_stop(stop.set):
            async with running_workers(manager, stop) as workers:
                request_id, total, skipped, summary = await _resume_or_submit(
                    manager, path, options, console, workers.interrupt
                )
                await _until_done(manager, request_id, workers)
        _, counts = await export_results(manager, request_id, out_path, fmt, None, force=force)
    return VerifyOutcome(request_id, total, skipped, out_path, counts, summary)
