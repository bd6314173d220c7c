"""The schema revision a database is at, read without alembic.

Every command checks it when it starts. Loading alembic and its migration scripts for that check cost each command
~60 ms of its start (out of ~0.5 s), so the check reads the version table with a plain query and compares it with
HEAD; alembic is loaded only when there is something to migrate (storage/migrate.py).
"""

from __future__ import annotations

from sqlalchemy import inspect, select, table
from sqlalchemy.engine import Connection
from sqlalchemy.sql import column

from bouncer_queue.storage.boundary import translate_errors, url_password
from bouncer_queue.storage.db import make_engine, mask_url

#: Alembic's version table, named for this project so it never meets another application's.
VERSION_TABLE = "bouncer_queue_alembic_version"
#: The newest migration shipped (migrations/versions); a test checks it against alembic's own head.
HEAD = "0007"


async def current(url: str, *, ssl: str | None = None) -> str | None:
    """The revision the database at `url` is at, or None before the first migration.

    It opens and disposes of an engine of its own, connecting with DATABASE_SSL's `ssl` mode: the runtime's engine
    is built after the migrations, and a pooled SQLite connection held open while alembic creates the schema made
    the next write fail with "disk I/O error" (tried in 1372a9a, reverted)."""
    engine = make_engine(url, ssl=ssl)
    try:
        async with (
            translate_errors(mask_url(url), "read the schema revision", url_password(url)),
            engine.connect() as connection,
        ):
            return await connection.run_sync(_read)
    finally:
        await engine.dispose()


def _read(connection: Connection) -> str | None:
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    version = table(VERSION_TABLE, column("version_num"))
    # One row at most: our migrations form a single line, never branches.
    return connection.execute(select(version.c.version_num)).scalar()
