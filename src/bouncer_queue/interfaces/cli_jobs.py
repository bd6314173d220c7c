"""The work commands: verify (the main job in one command), submit, results, workers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bouncer_queue import __version__
from bouncer_queue.config import Settings
from bouncer_queue.domain import Priority
from bouncer_queue.interfaces.common import console, load_settings, run, setup_logging
from bouncer_queue.interfaces.runner import (
    SubmitOptions,
    export_results,
    serve_workers,
    simulator_if_no_key,
    submit_file,
    verify_file,
    wait_for_request,
)
from bouncer_queue.ops.keys import ApiKeySource
from bouncer_queue.service import QueueManager

PriorityOpt = Annotated[str, typer.Option(help="CRITICAL, HIGH, NORMAL or LOW.", envvar="BOUNCER_PRIORITY")]
UserOpt = Annotated[str, typer.Option(help="Who the request is for.", envvar="BOUNCER_USER_ID")]
ColumnOpt = Annotated[str | None, typer.Option(help="CSV column (or JSON key) holding the address.")]
EncodingOpt = Annotated[str | None, typer.Option(help="File encoding when not UTF-8, e.g. cp1252.")]
MaxRowsOpt = Annotated[int | None, typer.Option(help="Refuse lists longer than this.", envvar="BOUNCER_MAX_ROWS")]
MaxCreditsOpt = Annotated[int | None, typer.Option(help="Refuse the list when it needs more credits than this.", min=0)]
PartialOpt = Annotated[
    bool, typer.Option("--allow-partial", help="Start even when the credits do not cover the whole list.")
]
NoCacheOpt = Annotated[
    bool, typer.Option("--no-cache", help="Send every address, even those verified within RESULT_CACHE_DAYS.")
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


def verify(
    file: Annotated[Path, typer.Argument(help="CSV, TXT or JSON list.", exists=True, dir_okay=False)],
    output: Annotated[Path | None, typer.Option(help="Where to write results (default: beside the input).")] = None,
    priority: PriorityOpt = "NORMAL",
    user_id: UserOpt = "cli",
    column: ColumnOpt = None,
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
        new=new,
        max_credits=max_credits,
        allow_partial=allow_partial,
        use_cache=not no_cache,
    )
    with simulator_if_no_key(settings, console) as effective:
        keys = ApiKeySource(effective, on_new_key=redactor.add_secret)
        outcome = run(effective, lambda: verify_file(effective, file, options, console, output, keys))
    console.print(_summary(dict(outcome.by_status)))
    console.print(f"results written to [bold]{outcome.output}[/bold] (request {outcome.request_id})")


def submit(
    file: Annotated[Path, typer.Argument(help="CSV, TXT or JSON list.", exists=True, dir_okay=False)],
    priority: PriorityOpt = "NORMAL",
    user_id: UserOpt = "cli",
    request_id: Annotated[str | None, typer.Option(help="Your own id for the request.")] = None,
    delay: Annotated[int, typer.Option(help="Hold the request back this many milliseconds.", min=0)] = 0,
    column: ColumnOpt = None,
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
        max_credits=max_credits,
        allow_partial=allow_partial,
        use_cache=not no_cache,
    )

    async def go() -> str:
        async with QueueManager(settings) as manager:
            submitted = await submit_file(manager, file, options, console)
            result = submitted.result
            if result.existing:
                console.print(f"request {result.request_id} already exists: nothing was stored", highlight=False)
            else:
                console.print(
                    f"{result.total_emails} addresses in {result.batch_count} batches; "
                    f"{submitted.skipped} rows skipped",
                    highlight=False,
                )
            for example in submitted.skipped_examples:
                console.print(f"  skipped {example}", highlight=False)
            if wait:
                await wait_for_request(manager, result.request_id, console)
            return result.request_id

    request = run(settings, go)
    typer.echo(request)


def results(
    request_id: Annotated[str, typer.Argument(help="The request id printed by submit.")],
    status: Annotated[str | None, typer.Option(help="Only these statuses, e.g. deliverable,risky.")] = None,
    format: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    output: Annotated[Path | None, typer.Option(help="File to write (default: standard output).")] = None,
) -> None:
    """Export a request's addresses with their results."""
    if format not in ("csv", "json"):
        raise typer.BadParameter("--format must be csv or json")
    statuses = {s.strip().lower() for s in status.split(",") if s.strip()} if status else None
    settings = load_settings()
    setup_logging(settings)

    async def go() -> int:
        async with QueueManager(settings) as manager:
            written, _ = await export_results(manager, request_id, output, format, statuses)
            return written

    written = run(settings, go)
    if output is not None:
        console.print(f"{written} rows written to {output}")


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


def workers() -> None:
    """Run every queue worker and scheduler until SIGINT/SIGTERM (a second signal forces)."""
    settings = load_settings()
    redactor = setup_logging(settings)
    keys = ApiKeySource(settings, on_new_key=redactor.add_secret, load_settings=Settings)
    run(settings, lambda: serve_workers(settings, lambda: banner(settings), keys))
