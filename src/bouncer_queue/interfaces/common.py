"""What every CLI command shares: building Settings, logging, running a coroutine, and turning errors into
clear messages with exit code 1 (never a traceback with a secret in it, unless `--debug` asks for tracebacks)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
import typer
from pydantic import ValidationError
from rich.console import Console

from bouncer_queue.config import Settings
from bouncer_queue.errors import Interrupted, VerifierError
from bouncer_queue.ops.logs import configure_logging, level_from_env
from bouncer_queue.ops.redact import Redactor

T = TypeVar("T")

console = Console(soft_wrap=True)  # a line too long for the terminal is not cut in two (it may be grepped)
err_console = Console(stderr=True, soft_wrap=True)  # messages stay one line each, whatever the width


class CliState:
    """Options of the root command, read by the subcommands."""

    debug: bool = False
    json_logs: bool | None = None


STATE = CliState()


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; an invalid value exits with the variable's name and the reason."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()]
        err_console.print("[red]invalid configuration:[/red]\n" + "\n".join(lines))
        raise typer.Exit(2) from None
    return settings


def setup_logging(settings: Settings, *, quiet: bool = False) -> Redactor:
    """Configure the logs once per command; `quiet` makes WARNING the default (unless LOG_LEVEL is set)."""
    base = "WARNING" if quiet and "log_level" not in settings.model_fields_set else settings.log_level
    level = "DEBUG" if STATE.debug else level_from_env(base)
    json = settings.log_json if STATE.json_logs is None else STATE.json_logs
    return configure_logging(level, json=json, secrets=settings.secrets())


def run(settings: Settings, make: Callable[[], Awaitable[T]], *, interrupt_ends: bool = False) -> T:
    """Run a coroutine; an error becomes a one-line message and exit code 1 (`--debug`: the traceback).

    Ctrl+C exits 130 with a note that queued work is kept, unless `interrupt_ends`: then Ctrl+C is the normal
    way to end the command (a `--watch`) and exits 0 quietly.
    """
    redactor = Redactor(settings.secrets())
    try:
        return asyncio.run(_call(make))
    except click.exceptions.ClickException:
        raise  # a usage error found late: click prints it and exits 2
    except VerifierError as exc:
        if STATE.debug:
            raise
        err_console.print(f"[red]error:[/red] {redactor.redact(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    except (KeyboardInterrupt, Interrupted):
        if interrupt_ends:
            raise typer.Exit(0) from None
        err_console.print("[yellow]interrupted; work in progress stays queued and resumes with the workers[/yellow]")
        raise typer.Exit(130) from None
    except Exception as exc:
        if STATE.debug:
            raise
        # Not one of ours, so not expected: one line (secrets masked) and the way to the whole story.
        message = redactor.redact(f"{type(exc).__name__}: {exc}")
        err_console.print(f"[red]error:[/red] {message} (run with --debug for the traceback)", highlight=False)
        raise typer.Exit(1) from None


async def _call(make: Callable[[], Awaitable[T]]) -> T:
    return await make()
