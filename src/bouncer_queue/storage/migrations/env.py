"""Alembic environment: runs the migrations on a connection handed over by storage/migrate.py.

`bouncer_queue.storage.migrate` opens an async engine and passes its sync connection in
`config.attributes["connection"]`; run from the alembic command line instead, this builds its own async engine
from `sqlalchemy.url`. Offline (--sql) mode is not supported: the three engines need live connections.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.revision import VERSION_TABLE
from bouncer_queue.storage.tables import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection given and no sqlalchemy.url configured")
    asyncio.run(_run_standalone(url))


main()
