"""Schema migrations, run programmatically: `upgrade` and `downgrade` take a database URL (the revision a
database is at is read without alembic, by storage/revision.py).

Alembic is configured in code from the migrations directory inside the installed package, so no alembic.ini is
needed on disk. Each call opens its own engine, runs alembic on its connection in one transaction (PostgreSQL and
SQLite roll DDL back on failure; MariaDB commits DDL as it goes) and disposes of the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from bouncer_queue.storage.boundary import translate_errors, url_password
from bouncer_queue.storage.db import make_engine, mask_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    """An alembic Config pointing at the packaged migrations (for the alembic API or the CLI's `db` command)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation would choke on a %-encoded password.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(url: str, revision: str = "head", *, ssl: str | None = None) -> None:
    """Migrate the database at `url` up to `revision`, connecting with DATABASE_SSL's `ssl` mode."""
    await _run(url, ssl, lambda config: command.upgrade(config, revision))


async def downgrade(url: str, revision: str = "base", *, ssl: str | None = None) -> None:
    """Migrate the database at `url` down to `revision` (by default: drop every table)."""
    await _run(url, ssl, lambda config: command.downgrade(config, revision))


async def head() -> str | None:
    """The newest revision the installed package ships."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def _run(url: str, ssl: str | None, action: Callable[[Config], None]) -> None:
    engine = make_engine(url, ssl=ssl)
    config = alembic_config()

    def run_with(connection: Connection) -> None:
        config.attributes["connection"] = connection
        action(config)

    try:
        async with translate_errors(mask_url(url), "migrate", url_password(url)), engine.begin() as connection:
            await connection.run_sync(run_with)
    finally:
        await engine.dispose()
