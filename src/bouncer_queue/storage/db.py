"""Engines for the three supported databases, picked from the URL alone (SQLite by default, PostgreSQL or MariaDB).

`make_engine` maps plain `sqlite:///`, `postgresql://` and `mysql://` URLs to their asyncio drivers and applies
each engine's settings: SQLite gets WAL, a long busy timeout and BEGIN IMMEDIATE write transactions so several
worker processes queue up for the write lock instead of failing with "database is locked"; PostgreSQL and MariaDB
get a connection pool. `mask_url` is what every log line and error message shows instead of the real URL.
"""

from __future__ import annotations

import re
import ssl as ssl_module
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from bouncer_queue.files import private_dir, private_file

#: Execution option that marks a transaction as read-only, so SQLite opens it DEFERRED (no write lock).
READ_ONLY_OPTION = "bouncer_read_only"

SQLITE_BUSY_TIMEOUT_MS = 30_000
MYSQL_POOL_RECYCLE_SECONDS = 1_800

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
}
_PASSWORD_IN_URL = re.compile(r"(://[^:/@]*:)[^@]*@")


def normalize_url(url: str) -> URL:
    """Parse `url` and swap a driverless scheme for its asyncio driver."""
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ***; safe for logs and error messages."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
        return parsed.render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _PASSWORD_IN_URL.sub(r"\1***@", str(url))


def make_engine(url: str, *, pool_size: int = 5, ssl: str | None = None) -> AsyncEngine:
    """Build the AsyncEngine for `url`; nothing connects until the first query."""
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        connect_args: dict[str, Any] = {"ssl": ssl} if ssl else {}
        return create_async_engine(
            parsed, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, connect_args=connect_args
        )
    if backend == "mysql":
        return _mysql_engine(parsed, pool_size, ssl)
    raise ValueError(f"unsupported database URL {mask_url(parsed)}: use sqlite, postgresql or mysql")


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """A session factory bound to `engine`; objects stay readable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def _mysql_engine(url: URL, pool_size: int, ssl: str | None) -> AsyncEngine:
    url = url.update_query_dict({"charset": "utf8mb4"})
    connect_args: dict[str, Any] = {}
    if ssl:
        context = ssl_module.create_default_context()
        if ssl in {"require", "prefer", "allow"}:
            # libpq semantics: "require" encrypts without verifying the server certificate.
            context.check_hostname = False
            context.verify_mode = ssl_module.CERT_NONE
        connect_args["ssl"] = context
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=MYSQL_POOL_RECYCLE_SECONDS,
        connect_args=connect_args,
    )


def _sqlite_engine(url: URL) -> AsyncEngine:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database).expanduser()
        if not path.parent.exists():
            private_dir(path.parent)
        private_file(path)  # SQLite gives its journal and WAL files the database file's mode
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module so _sqlite_on_begin decides how each one starts.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    # A DEFERRED transaction that reads and then writes fails with "database is locked" when another process
    # wrote in between; IMMEDIATE takes the write lock up front, so writers wait (busy_timeout) and serialize.
    if connection.get_execution_options().get(READ_ONLY_OPTION):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
