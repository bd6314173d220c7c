"""The `bouncer-queue` command line: one typer app; each command parses options, builds config, calls one function.

Every option has an environment twin (shown in --help). Commands turn `VerifierError` into exit code 1.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bouncer_queue import __version__
from bouncer_queue.interfaces import cli_credits, cli_jobs, cli_ops, cli_serve
from bouncer_queue.interfaces.common import STATE
from bouncer_queue.ops import collector

app = typer.Typer(
    no_args_is_help=True,
    help="Verify email lists through the Bouncer API.",
    # Plain help: the rich layout truncates long environment variable names in its narrow help column.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

_SIM = "BOUNCER_SIMULATOR_"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bouncer-queue {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Log at DEBUG level and show tracebacks (also: DEBUG=bull*).")
    ] = False,
    json_logs: Annotated[bool | None, typer.Option("--json-logs/--text-logs", help="Log format.")] = None,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    """Verify email lists through the Bouncer API."""
    STATE.debug = debug
    STATE.json_logs = json_logs


app.command()(cli_jobs.verify)
app.command()(cli_jobs.submit)
app.command()(cli_credits.estimate)
app.command()(cli_jobs.results)
app.command()(cli_jobs.cancel)


@cli_ops.workers_app.callback(invoke_without_command=True)
def _workers(
    ctx: typer.Context, queues: cli_jobs.QueuesOpt = None, concurrency: cli_jobs.ConcurrencyOpt = None
) -> None:
    """Run the queue workers and schedulers until SIGINT/SIGTERM (a second signal forces); `workers list` shows
    the live processes. --queues and --concurrency override WORKER_QUEUES and the *_CONCURRENCY settings."""
    if ctx.invoked_subcommand is None:
        cli_jobs.workers(queues, concurrency)


app.add_typer(cli_ops.workers_app, name="workers")
app.command()(cli_ops.stats)
app.command()(cli_ops.health)
app.command()(cli_ops.pause)
app.command()(cli_ops.resume)
app.command("retry-failed")(cli_ops.retry_failed)
app.command("clean-failed")(cli_ops.clean_failed)
app.command()(cli_ops.purge)
app.command()(cli_ops.recover)
app.add_typer(cli_ops.dlq_app, name="dlq")
app.add_typer(cli_ops.db_app, name="db")
app.command()(cli_serve.serve)
app.add_typer(cli_serve.tokens_app, name="tokens")


@app.command()
def simulator(
    host: Annotated[str, typer.Option(help="Interface to listen on.", envvar=f"{_SIM}HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", envvar=f"{_SIM}PORT")] = 8025,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key", help="Accepted API key (repeatable); none accepts any key.", envvar=f"{_SIM}API_KEYS"
        ),
    ] = None,
    credits: Annotated[int, typer.Option(help="Starting credits per key.", envvar=f"{_SIM}CREDITS")] = 1_000_000,
    speed: Annotated[float, typer.Option(help="Emails per second per batch.", envvar=f"{_SIM}SPEED")] = 40.0,
    max_parallel: Annotated[int, typer.Option(help="Batches processed at once.", envvar=f"{_SIM}MAX_PARALLEL")] = 25,
    batch_limit: Annotated[
        int, typer.Option(help="Batch status/download/finish/delete calls per window.", envvar=f"{_SIM}BATCH_LIMIT")
    ] = 200,
    create_limit: Annotated[int, typer.Option(help="Batch creates per window.", envvar=f"{_SIM}CREATE_LIMIT")] = 60,
    sync_limit: Annotated[int, typer.Option(help="Batch-sync calls per window.", envvar=f"{_SIM}SYNC_LIMIT")] = 100,
    domain_limit: Annotated[int, typer.Option(help="Domain checks per window.", envvar=f"{_SIM}DOMAIN_LIMIT")] = 1000,
    toxicity_limit: Annotated[
        int, typer.Option(help="Toxicity list creates per window.", envvar=f"{_SIM}TOXICITY_LIMIT")
    ] = 10,
    window_seconds: Annotated[
        float, typer.Option(help="Rate-limit window in seconds.", envvar=f"{_SIM}WINDOW_SECONDS")
    ] = 60.0,
    fail_rate: Annotated[float, typer.Option(help="Probability of a 503 answer.", envvar=f"{_SIM}FAIL_RATE")] = 0.0,
    batch_fail_rate: Annotated[
        float, typer.Option(help="Share of batches that end 'failed'.", envvar=f"{_SIM}BATCH_FAIL_RATE")
    ] = 0.0,
    drop_create_response_rate: Annotated[
        float,
        typer.Option(
            help="Share of batch creates that are created and charged, then answered by closing the connection.",
            envvar=f"{_SIM}DROP_CREATE_RESPONSE_RATE",
        ),
    ] = 0.0,
    create_latency: Annotated[
        float,
        typer.Option(
            help="Seconds a batch create waits, once created, before answering.", envvar=f"{_SIM}CREATE_LATENCY"
        ),
    ] = 0.0,
    latency_scale: Annotated[
        float,
        typer.Option(help="Real-time verify latency scale (1 = real, 0 = instant).", envvar=f"{_SIM}LATENCY_SCALE"),
    ] = 0.01,
    retry_after_header: Annotated[
        bool, typer.Option(help="Send Retry-After on 429 answers.", envvar=f"{_SIM}RETRY_AFTER_HEADER")
    ] = False,
    seed: Annotated[
        str, typer.Option(help="Seed of the result generator.", envvar=f"{_SIM}SEED")
    ] = "bouncer-simulator",
) -> None:
    """Run a local Bouncer API simulator (same paths as https://api.usebouncer.com/v1.1)."""
    # Heavy imports (FastAPI) only for this command: every other command, `health` first, starts faster.
    from bouncer_queue.simulator.config import SimulatorConfig
    from bouncer_queue.simulator.server import run

    try:
        config = SimulatorConfig(
            api_keys=tuple(api_key or ()),
            credits=credits,
            speed=speed,
            max_parallel=max_parallel,
            batch_limit=batch_limit,
            create_limit=create_limit,
            sync_limit=sync_limit,
            domain_limit=domain_limit,
            toxicity_limit=toxicity_limit,
            window_seconds=window_seconds,
            fail_rate=fail_rate,
            batch_fail_rate=batch_fail_rate,
            drop_create_response_rate=drop_create_response_rate,
            create_latency_seconds=create_latency,
            latency_scale=latency_scale,
            retry_after_header=retry_after_header,
            seed=seed,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"Bouncer simulator on http://{host}:{port}/v1.1", err=True)
    run(host, port, config)


def main() -> None:
    """Entry point of the `bouncer-queue` script."""
    collector.tune_for_bulk_rows()
    app()
