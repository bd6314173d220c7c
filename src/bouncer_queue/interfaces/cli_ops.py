"""The operations commands: stats, health, pause/resume/retry-failed/clean-failed/purge, dead letters, db, recover."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.live import Live
from rich.table import Table

from bouncer_queue.interfaces.common import console, err_console, load_settings, run, setup_logging
from bouncer_queue.pipeline.deadletter import may_have_been_charged
from bouncer_queue.queueing.admin import BULLMQ_TYPES
from bouncer_queue.queueing.names import ALL_QUEUES, check_queue_name
from bouncer_queue.service import QueueManager, check_health

T = TypeVar("T")
Stats = dict[str, dict[str, int | bool]]

#: BullMQ's own job types, as bull-board and Node's getJobCounts name them.
STATES = BULLMQ_TYPES

workers_app = typer.Typer(
    help="Run the workers until SIGINT/SIGTERM (no subcommand; the options below apply), or list the live ones.",
    rich_markup_mode=None,
)
dlq_app = typer.Typer(no_args_is_help=True, help="The dead-letter queue: jobs given up on.", rich_markup_mode=None)
db_app = typer.Typer(no_args_is_help=True, help="Database schema migrations.", rich_markup_mode=None)


def with_manager(call: Callable[[QueueManager], Awaitable[T]], *, interrupt_ends: bool = False) -> T:
    """Open the system, run one service call, close it (see `run` for `interrupt_ends`)."""
    settings = load_settings()
    setup_logging(settings)

    async def go() -> T:
        async with QueueManager(settings) as manager:
            return await call(manager)

    return run(settings, go, interrupt_ends=interrupt_ends)


def _queue(name: str) -> str:
    try:
        return check_queue_name(name)
    except Exception as exc:
        raise typer.BadParameter(str(exc)) from None


def stats_table(counts: Stats) -> Table:
    table = Table(title="queue statistics (BullMQ's counts)")
    table.add_column("queue", no_wrap=True)
    for state in STATES:
        table.add_column(state, justify="right")
    for queue in ALL_QUEUES:
        row = counts.get(queue, {})
        name = f"{queue} (paused)" if row.get("isPaused") else queue
        table.add_row(name, *(str(row.get(s, 0)) for s in STATES))
    return table


def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    watch: Annotated[float | None, typer.Option(help="Refresh every N seconds until Ctrl+C.", min=0.1)] = None,
) -> None:
    """Job counts of every queue, as BullMQ counts them, and whether it is paused."""
    if watch is None:
        _print_stats(with_manager(_stats_json if as_json else lambda m: m.get_bullmq_stats()), as_json)
        return
    every = watch

    async def redraw(manager: QueueManager) -> None:
        with Live(stats_table(await manager.get_bullmq_stats()), console=console) as live:
            while True:
                await asyncio.sleep(every)
                live.update(stats_table(await manager.get_bullmq_stats()))

    async def append(manager: QueueManager) -> None:
        while True:
            _print_stats(await manager.get_bullmq_stats(), as_json, compact=True)
            await asyncio.sleep(every)

    # A terminal gets one table redrawn in place; a pipe or a file gets every refresh appended (JSON: one line each).
    in_place = console.is_terminal and not as_json
    with_manager(redraw if in_place else append, interrupt_ends=True)


async def _stats_json(manager: QueueManager) -> dict[str, Any]:
    """BullMQ's counts per queue, plus credits: the last balance the health check read, reserved and spent per
    request."""
    counts: dict[str, Any] = dict(await manager.get_bullmq_stats())
    counts["credits"] = await manager.credits_report(await manager.last_known_credits())
    return counts


def _print_stats(counts: dict[str, Any], as_json: bool, *, compact: bool = False) -> None:
    if not as_json:
        console.print(stats_table(counts))
    elif compact:
        typer.echo(json.dumps(counts, sort_keys=True))
    else:
        typer.echo(json.dumps(counts, indent=2, sort_keys=True))


def _health_table(report: dict[str, object]) -> Table:
    table = Table(title=f"health: {report['status']}")
    table.add_column("check")
    table.add_column("value")
    snapshot = report.get("snapshot")
    for key, value in snapshot.items() if isinstance(snapshot, dict) else []:
        table.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    return table


def health(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    live: Annotated[
        bool, typer.Option("--live", help="Ask Bouncer for the credits now (spends one of its 10 checks a minute).")
    ] = False,
    history: Annotated[bool, typer.Option("--history", help="Show the recorded health checks instead.")] = False,
    limit: Annotated[int, typer.Option(help="How many history rows.")] = 20,
) -> None:
    """System health; exits 1 when unhealthy, so it can serve as a probe. Credits are the last recorded figure."""
    if history:
        rows = with_manager(lambda m: m.health_history(limit))
        table = Table(title="recent health checks")
        for column in ("recorded", "status", "alerts"):
            table.add_column(column)
        for row in rows:
            table.add_row(str(row.recorded_at), row.status, ", ".join(row.alerts) or "-")
        console.print(table)
        return
    settings = load_settings()
    setup_logging(settings)
    report = run(settings, lambda: check_health(settings, live=live)).to_dict()
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True, default=str))
    else:
        console.print(_health_table(report))
        for problem in report.get("problems", []) or []:
            console.print(f"[red]problem:[/red] {problem}")
        for alert in report.get("alerts", []) or []:
            console.print(f"[yellow]alert:[/yellow] {alert.get('message') if isinstance(alert, dict) else alert}")
    if report["status"] == "unhealthy":
        raise typer.Exit(1)


def pause(queue: Annotated[str, typer.Argument(help="Queue name.")]) -> None:
    """Pause a queue: workers stop taking its jobs."""
    name = _queue(queue)
    with_manager(lambda m: m.pause_queue(name))
    console.print(f"paused {name}")


def resume(queue: Annotated[str, typer.Argument(help="Queue name.")]) -> None:
    """Resume a paused queue."""
    name = _queue(queue)
    with_manager(lambda m: m.resume_queue(name))
    console.print(f"resumed {name}")


def retry_failed(queue: Annotated[str, typer.Argument(help="Queue name.")]) -> None:
    """Move a queue's failed jobs back to waiting."""
    name = _queue(queue)
    count = with_manager(lambda m: m.retry_failed_jobs(name))
    console.print(f"{count} failed jobs of {name} retried")


def clean_failed(
    queue: Annotated[str, typer.Argument(help="Queue name.")],
    hours: Annotated[float, typer.Option(help="Remove failed jobs older than this.", min=0, max=876_000)] = 24,
) -> None:
    """Remove a queue's failed jobs older than --hours."""
    name = _queue(queue)
    count = with_manager(lambda m: m.clean_failed_jobs(name, hours))
    console.print(f"{count} failed jobs of {name} removed")


def purge(
    queue: Annotated[str, typer.Argument(help="Queue name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove every job of a queue that is not running (waiting, delayed, completed, failed).

    The ledger is untouched: workers offer unfinished batches again; `cancel REQUEST_ID` stops a request."""
    name = _queue(queue)
    if not yes and not typer.confirm(f"Remove every job of {name} that is not running?", err=True):
        err_console.print("nothing removed")
        raise typer.Exit(1)
    count = with_manager(lambda m: m.purge_queue(name))
    console.print(f"{count} jobs of {name} removed")


@dlq_app.command("list")
def dlq_list(
    all_: Annotated[bool, typer.Option("--all", help="Include replayed letters.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List dead letters."""
    letters = with_manager(lambda m: m.dead_letters(include_replayed=all_))
    if as_json:
        rows = [
            {
                "id": d.id,
                "queue": d.queue,
                "job": d.job_name,
                "error_class": d.error_class,
                "message": d.message,
                "attempts": d.attempts,
                "batch_id": d.batch_id,
                "request_id": d.request_id,
                "created_at": str(d.created_at),
                "replayed_at": str(d.replayed_at) if d.replayed_at else None,
                "may_have_been_charged": may_have_been_charged(d),
            }
            for d in letters
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="dead letters")
    for column in ("id", "queue", "job", "batch", "error", "charged", "message", "attempts", "created", "replayed"):
        table.add_column(column)
    for d in letters:
        table.add_row(
            str(d.id),
            d.queue,
            d.job_name,
            str(d.batch_id or "-"),
            d.error_class,
            "may have been charged" if may_have_been_charged(d) else "-",
            d.message[:80],
            str(d.attempts),
            str(d.created_at),
            str(d.replayed_at or "-"),
        )
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(
    letter_id: Annotated[int | None, typer.Argument(help="The dead letter's id.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter not yet replayed.")] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Also replay letters whose batch may have been charged (check Bouncer first)."),
    ] = False,
) -> None:
    """Put dead-lettered work back in the pipeline (a batch is submitted again, and paid again)."""
    if (letter_id is None) == (not all_):
        raise typer.BadParameter("give a dead letter id, or --all")
    if all_:
        _replay_all(force)
        return
    assert letter_id is not None
    replayed = with_manager(lambda m: m.replay_dead_letter(letter_id, force=force))
    if not replayed:
        console.print(f"[red]dead letter {letter_id} does not exist or was already replayed[/red]")
        raise typer.Exit(1)
    console.print(f"dead letter {letter_id} replayed")


@workers_app.command("list")
def workers_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The workers processes alive now (their heartbeat in Redis has not expired)."""
    found = with_manager(lambda m: m.live_workers())
    if as_json:
        typer.echo(json.dumps([w.to_dict() for w in found], indent=2))
        return
    table = Table(title=f"{len(found)} live workers processes")
    for column in ("host", "pid", "version", "started", "last beat", "queues"):
        table.add_column(column)
    for w in found:
        started, beat = (
            datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds") for t in (w.started_at, w.last_beat)
        )
        table.add_row(w.host, str(w.pid), w.version, started, beat, ", ".join(w.queues))
    console.print(table)


def _replay_all(force: bool) -> None:
    async def go(manager: QueueManager) -> tuple[int, list[int]]:
        held = [] if force else [d.id for d in await manager.dead_letters_needing_force()]
        return await manager.replay_all_dead_letters(force=force), held

    count, held = with_manager(go)
    console.print(f"{count} dead letters replayed")
    if held:
        ids = ", ".join(map(str, held))
        console.print(
            f"[yellow]not replayed, may have been charged: {ids}. Check your Bouncer account for these batches, "
            "then `dlq replay ID --force` each one that Bouncer does not have.[/yellow]"
        )


def recover() -> None:
    """Rebuild missing jobs from the database (after Redis lost its data). Safe to run at any time."""
    count = with_manager(lambda m: m.recover())
    console.print(f"{count} jobs offered to the queues (existing ones are kept as they are)")


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply the schema migrations to DATABASE_URL (or the embedded SQLite file)."""
    from bouncer_queue.storage import migrate

    settings = load_settings()
    setup_logging(settings)
    url = settings.effective_database_url()
    run(settings, lambda: migrate.upgrade(url, revision, ssl=settings.database_ssl))
    console.print(f"database at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision.")]) -> None:
    """Revert the schema to an earlier revision ('base' drops every table)."""
    from bouncer_queue.storage import migrate

    settings = load_settings()
    setup_logging(settings)
    url = settings.effective_database_url()
    run(settings, lambda: migrate.downgrade(url, revision, ssl=settings.database_ssl))
    console.print(f"database at {revision}")
