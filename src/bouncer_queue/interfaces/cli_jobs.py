"""The work commands: verify (the main job in one command), submit, results, cancel, workers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bouncer_queue import __version__
from bouncer_queue.config import Settings
from bouncer_queue.domain import Priority, ResultStatus
from bouncer_queue.errors import InputError
from bouncer_queue.interfaces.common import console, err_console, load_settings, run, setup_logging
from bouncer_queue.interfaces.runner import (
    OutputOptions,
    SubmitOptions,
    export_results,
    preflight,
    serve_workers,
    simulator_if_no_key,
    submit_file,
    verify_file,
    wait_for_request,
)
from bouncer_queue.lists import EXPORT_FORMATS, LIST_FORMATS, ExportFormat
from bouncer_queue.ops.keys import ApiKeySource
from bouncer_queue.pipeline.cancel import CancelResult
from bouncer_queue.service import QueueManager

FileArg = Annotated[
    Path, typer.Argument(help="CSV, TSV, TXT, JSON, JSON Lines or XLSX list.", exists=True, dir_okay=False)
]
PriorityOpt = Annotated[str, typer.Option(help="CRITICAL, HIGH, NORMAL or LOW.", envvar="BOUNCER_PRIORITY")]
UserOpt = Annotated[str, typer.Option(help="Who the request is for.", envvar="BOUNCER_USER_ID")]
ColumnOpt = Annotated[
    str | None, typer.Option(help="Column holding the address: a header or JSON key, or a number from 1.")
]
NoHeaderOpt = Annotated[
    bool, typer.Option("--no-header", help="The first row is data, not a header (CSV, TSV, XLSX); columns: 1, 2, ...")
]
SheetOpt = Annotated[str | None, typer.Option(help="Workbook sheet to read (name or number); default: the first.")]
InputFormatOpt = Annotated[
    str | None, typer.Option(help=f"Read the list as {', '.join(LIST_FORMATS)} whatever its extension.")
]
EncodingOpt = Annotated[str | None, typer.Option(help="File encoding when not UTF-8, e.g. cp1252.")]
MaxRowsOpt = Annotated[
    int | None, typer.Option(help="Refuse lists longer than this.", envvar="BOUNCER_MAX_ROWS", min=1)
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace the output file if it exists.")]
#: The longest hold-back the ledger can store (its delay column is a 32-bit integer of milliseconds: ~24.8 days).
MAX_DELAY_MS = 2**31 - 1
MaxCreditsOpt = Annotated[int | None, typer.Option(help="Refuse the list when it needs more credits than this.", min=0)]
PartialOpt = Annotated[
    bool, typer.Option("--allow-partial", help="Start even when the credits do not cover the whole list.")
]
NoCacheOpt = Annotated[
    bool, typer.Option("--no-cache", help="Send every address, even those verified within RESULT_CACHE_DAYS.")
]
QueuesOpt = Annotated[
    str | None,
    typer.Option(help="Serve only these queues, comma-separated (default: all).", envvar="WORKER_QUEUES"),
]
ConcurrencyOpt = Annotated[
    list[str] | None,
    typer.Option(help="QUEUE=N: jobs run at once on that queue (repeatable); overrides *_CONCURRENCY."),
]


def _priority(value: str) -> Priority:
    try:
        return Priority.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _summary(by_status: dict[str, int]) -> Table:
    table = Table(title="results by status")
    table.add_column("status")
    table.add_column("addresses", justify="right")
    for status, count in sorted(by_status.items(), key=lambda kv: -kv[1]):
        table.add_row(status, str(count))
    table.add_row("[bold]total[/bold]", f"[bold]{sum(by_status.values())}[/bold]")
    return table


def _format(value: str | None, allowed: Sequence[str]) -> ExportFormat | None:
    if value is None:
        return None
    if value not in allowed:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}", param_hint="--format")
    return value  # type: ignore[return-value]


def _print_skipped(summary: str) -> None:
    if summary:
        err_console.print(summary, highlight=False)


def verify(
    file: Annotated[
        Path, typer.Argument(help="CSV, TSV, TXT, JSON, JSON Lines or XLSX list.", exists=True, dir_okay=False)
    ],
    output: Annotated[
        Path | None, typer.Option(help="Where to write results (default: beside the input, same format).")
    ] = None,
    format: Annotated[
        str | None,
        typer.Option("--format", help=f"Results format: {', '.join(EXPORT_FORMATS)} (default: the input's)."),
    ] = None,
    force: ForceOpt = False,
    priority: PriorityOpt = "NORMAL",
    user_id: UserOpt = "cli",
    column: ColumnOpt = None,
    no_header: NoHeaderOpt = False,
    sheet: SheetOpt = None,
    input_format: InputFormatOpt = None,
    encoding: EncodingOpt = None,
    max_rows: MaxRowsOpt = None,
    new: Annotated[bool, typer.Option("--new", help="Verify again as a new request, even if run before.")] = False,
    max_credits: MaxCreditsOpt = None,
    allow_partial: PartialOpt = False,
    no_cache: NoCacheOpt = False,
) -> None:
    """Verify a list in one command: starts what is missing, runs the workers here, writes the results.

    Run again on the same list, it resumes the earlier request instead of paying twice (--new: start afresh)."""
    settings = load_settings()
    redactor = setup_logging(settings, quiet=True)  # INFO lines would scroll over the progress bar
    options = SubmitOptions(
        user_id=user_id,
        priority=_priority(priority),
        column=column,
        max_rows=max_rows,
        encoding=encoding,
        header=not no_header,
        sheet=sheet,
        input_format=input_format,
        new=new,
        max_credits=max_credits,
        allow_partial=allow_partial,
        use_cache=not no_cache,
    )
    out = OutputOptions(output, _format(format, EXPORT_FORMATS), force)
    run(settings, lambda: preflight(file, options, out))  # a refused output or a bad option: before anything starts
    with simulator_if_no_key(settings, err_console) as effective:
        keys = ApiKeySource(effective, on_new_key=redactor.add_secret)
        outcome = run(effective, lambda: verify_file(effective, file, options, console, out, keys))
    console.print(_summary(dict(outcome.by_status)))
    _print_skipped(outcome.skipped_summary)
    console.print(f"results written to [bold]{outcome.output}[/bold] (request {outcome.request_id})")


def submit(
    file: Annotated[
        Path, typer.Argument(help="CSV, TSV, TXT, JSON, JSON Lines or XLSX list.", exists=True, dir_okay=False)
    ],
    priority: PriorityOpt = "NORMAL",
    user_id: UserOpt = "cli",
    request_id: Annotated[str | None, typer.Option(help="Your own id for the request.")] = None,
    delay: Annotated[
        int, typer.Option(help="Hold the request back this many milliseconds.", min=0, max=MAX_DELAY_MS)
    ] = 0,
    column: ColumnOpt = None,
    no_header: NoHeaderOpt = False,
    sheet: SheetOpt = None,
    input_format: InputFormatOpt = None,
    encoding: EncodingOpt = None,
    max_rows: MaxRowsOpt = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until the request is done.")] = False,
    max_credits: MaxCreditsOpt = None,
    allow_partial: PartialOpt = False,
    no_cache: NoCacheOpt = False,
) -> None:
    """Store a list and queue it for the workers; prints the request id."""
    settings = load_settings()
    setup_logging(settings)
    options = SubmitOptions(
        user_id=user_id,
        request_id=request_id,
        priority=_priority(priority),
        delay_ms=delay,
        column=column,
        max_rows=max_rows,
        encoding=encoding,
        header=not no_header,
        sheet=sheet,
        input_format=input_format,
        max_credits=max_credits,
        allow_partial=allow_partial,
        use_cache=not no_cache,
    )

    async def go() -> str:
        async with QueueManager(settings) as manager:
            submitted = await submit_file(manager, file, options, err_console)  # stdout: the request id alone
            result = submitted.result
            if result.existing:
                err_console.print(f"request {result.request_id} already exists: nothing was stored", highlight=False)
            else:
                err_console.print(
                    f"{result.total_emails} addresses in {result.batch_count} batches; "
                    f"{submitted.skipped} rows skipped",
                    highlight=False,
                )
                _print_skipped(submitted.skipped_summary)
            if wait:
                await wait_for_request(manager, result.request_id, check_workers=True)
            return result.request_id

    request = run(settings, go)
    typer.echo(request)


#: What `results --status` accepts: Bouncer's verdicts, and the rows without an address.
RESULT_STATUSES = (*(s.value for s in ResultStatus), "skipped")


def _statuses(value: str | None) -> set[str] | None:
    if not value:
        return None
    wanted = {s.strip().lower() for s in value.split(",") if s.strip()}
    unknown = sorted(wanted - set(RESULT_STATUSES))
    if unknown:
        raise typer.BadParameter(
            f"unknown status {', '.join(unknown)}; valid: {', '.join(RESULT_STATUSES)}", param_hint="--status"
        )
    return wanted


def results(
    request_id: Annotated[str, typer.Argument(help="The request id printed by submit.")],
    status: Annotated[
        str | None, typer.Option(help=f"Only these statuses, comma-separated ({', '.join(RESULT_STATUSES)}).")
    ] = None,
    format: Annotated[str, typer.Option("--format", help=f"{', '.join(EXPORT_FORMATS)}.")] = "csv",
    output: Annotated[Path | None, typer.Option(help="File to write (default: standard output).")] = None,
    force: ForceOpt = False,
) -> None:
    """Export a request's rows, as they were given, with their results."""
    fmt = _format(format, EXPORT_FORMATS) or "csv"
    statuses = _statuses(status)
    settings = load_settings()
    setup_logging(settings)

    async def go() -> int:
        async with QueueManager(settings) as manager:
            if await manager.get_request(request_id) is None:
                raise InputError(f"no request {request_id!r}; `submit` and `verify` print the ids of theirs")
            written, _ = await export_results(manager, request_id, output, fmt, statuses, force=force)
            return written

    written = run(settings, go)
    if output is not None:
        err_console.print(f"{written} rows written to {output}")


def cancel(request_id: Annotated[str, typer.Argument(help="The request id printed by submit or verify.")]) -> None:
    """Cancel a request: batches not yet sent never are; batches at Bouncer are finished (unused credits return)."""
    settings = load_settings()
    setup_logging(settings)

    async def go() -> CancelResult:
        async with QueueManager(settings) as manager:
            return await manager.cancel_request(request_id)

    outcome = run(settings, go)
    if not outcome.found:
        err_console.print(f"[red]error:[/red] no request {request_id!r}", highlight=False)
        raise typer.Exit(1)
    console.print(
        f"request {request_id} cancelled: {outcome.batches_cancelled} batches will not be sent, "
        f"{outcome.batches_finished} batches at Bouncer finished early",
        highlight=False,
    )
    for error in outcome.errors:
        err_console.print(f"[yellow]could not finish {error}[/yellow]", highlight=False)


def banner(settings: Settings) -> None:
    """The seed's startup banner: the configuration, then a check-marked line per subsystem."""
    out = console.print
    out("[bold]Bouncer Email Verification Queue Workers[/bold]" + f" (bouncer-queue {__version__})")
    out("=" * 50)
    out("Configuration:")
    out(f"  Environment: {settings.environment}")
    redis = settings.external_redis_url()
    out(f"  Redis: {'embedded Valkey' if redis is None else _mask(redis)}")
    out(f"  Bouncer API URL: {settings.bouncer_api_base_url}")
    out(f"  Max Concurrent Batches: {settings.max_concurrent_batches}")
    out(f"  Batch Size: {settings.batch_size}")
    out("")
    out("[green]✓[/green] Queue workers started successfully")
    out(
        f"[green]✓[/green] Email verification processor is running with "
        f"{settings.email_verification_concurrency} concurrent workers"
    )
    out(
        f"[green]✓[/green] Rate limiting is active ({settings.rate_limit_max} requests/"
        f"{settings.rate_limit_window_seconds:g}s)"
    )
    out("[green]✓[/green] Health monitoring is active")
    if settings.metrics_port is not None:
        out(f"[green]✓[/green] Prometheus metrics on port {settings.metrics_port}")
    out("")
    out("Queue workers are now processing jobs...")
    out("Press Ctrl+C to stop gracefully")


def _mask(url: str) -> str:
    from bouncer_queue.queueing.connection import mask_url

    return mask_url(url)


#: `workers --concurrency NAME=N`: the queue, or a short name, and the setting it overrides.
CONCURRENCY_SETTINGS = {
    "email-verification": "email_verification_concurrency",
    "batch-status-check": "batch_status_concurrency",
    "batch-download": "batch_download_concurrency",
    "cleanup-tasks": "cleanup_concurrency",
}


def worker_overrides(queues: str | None, concurrency: Sequence[str]) -> dict[str, object]:
    """Settings overrides from `--queues q1,q2` and `--concurrency name=N` (repeatable or comma-separated)."""
    overrides: dict[str, object] = {} if queues is None else {"worker_queues": queues}
    for item in (part for value in concurrency for part in value.split(",") if part.strip()):
        name, sep, number = item.partition("=")
        field = CONCURRENCY_SETTINGS.get(name.strip())
        if not sep or field is None or not number.strip().isdigit() or not 1 <= int(number) <= 1000:
            raise typer.BadParameter(
                f"{item!r} is not QUEUE=N with N from 1 to 1000; queues: {', '.join(CONCURRENCY_SETTINGS)}",
                param_hint="--concurrency",
            )
        overrides[field] = int(number)
    return overrides


def workers(queues: str | None = None, concurrency: Sequence[str] | None = None) -> None:
    """Run the queue workers and schedulers until SIGINT/SIGTERM (a second signal forces); the options are the
    `workers` group's (cli.py), since `workers list` shares the name."""
    settings = load_settings(**worker_overrides(queues, concurrency or []))
    redactor = setup_logging(settings)
    keys = ApiKeySource(settings, on_new_key=redactor.add_secret, load_settings=Settings)
    run(settings, lambda: serve_workers(settings, lambda: banner(settings), keys))
