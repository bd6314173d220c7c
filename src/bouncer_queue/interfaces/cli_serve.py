"""The HTTP commands: `serve` (the JSON API and the dashboard, with uvicorn) and `tokens` (create, list, revoke)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from bouncer_queue.access import parse_scopes
from bouncer_queue.errors import InputError
from bouncer_queue.interfaces.cli_ops import with_manager
from bouncer_queue.interfaces.common import console, err_console, load_settings, run, setup_logging
from bouncer_queue.service import QueueManager

tokens_app = typer.Typer(
    no_args_is_help=True, help="API tokens of the HTTP API and the dashboard.", rich_markup_mode=None
)


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.", envvar="API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.", envvar="API_PORT")] = None,
) -> None:
    """Serve the HTTP API (/api/v1, docs at /api/v1/docs) and the dashboard (/) until SIGINT/SIGTERM."""
    import uvicorn  # heavy imports only for this command

    from bouncer_queue.interfaces.http.app import create_app

    settings = load_settings()
    setup_logging(settings)
    app = create_app(QueueManager(settings))
    config = uvicorn.Config(
        app,
        host=host or settings.api_host,
        port=settings.api_port if port is None else port,
        log_config=None,  # our logging (JSON or text, secrets redacted) stays in charge
        proxy_headers=False,
    )
    run(settings, uvicorn.Server(config).serve)


@tokens_app.command("create")
def create_token(
    name: Annotated[str, typer.Option(help="Who or what the token is for.")],
    scope: Annotated[list[str], typer.Option(help="read, submit or admin (repeatable).")],
) -> None:
    """Create a token and print it: it is shown this once, only its hash is stored."""
    try:
        scopes = parse_scopes(scope)
    except InputError as exc:
        raise typer.BadParameter(str(exc)) from None
    issued = with_manager(lambda manager: manager.create_token(name, scopes))
    # The note goes to stderr, so `TOKEN=$(bouncer-queue tokens create ...)` captures the token alone.
    note = f"token {issued.name!r} ({', '.join(issued.scopes)}); store it now, it is not shown again:"
    err_console.print(note, style="bold", highlight=False)
    typer.echo(issued.token)


@tokens_app.command("list")
def list_tokens(as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False) -> None:
    """Every token: id, name, public prefix, scopes, when created, last used and revoked (never the token)."""
    tokens = with_manager(lambda manager: manager.list_tokens())
    if as_json:
        rows = [
            {
                "id": t.id,
                "name": t.name,
                "prefix": t.prefix,
                "scopes": list(t.scopes),
                "created_at": t.created_at.isoformat(),
                "revoked": t.revoked_at is not None,
            }
            for t in tokens
        ]
        typer.echo(json.dumps(rows))
        return
    table = Table(title="API tokens")
    for column in ("id", "name", "prefix", "scopes", "created", "last used", "revoked"):
        table.add_column(column)
    for t in tokens:
        times = [f"{v:%Y-%m-%d %H:%M}" if v else "" for v in (t.created_at, t.last_used_at, t.revoked_at)]
        table.add_row(str(t.id), t.name, t.prefix + "…", ",".join(t.scopes), *times)
    console.print(table)


@tokens_app.command("revoke")
def revoke_token(name_or_id: Annotated[str, typer.Argument(help="The token's name or id.")]) -> None:
    """Revoke a token at once: the next request with it gets 401."""
    revoked = with_manager(lambda manager: manager.revoke_token(name_or_id))
    if revoked == 0:
        console.print(f"[red]no live token named {name_or_id!r}[/red]")
        raise typer.Exit(1)
    console.print(f"{revoked} token(s) revoked")
