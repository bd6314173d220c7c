"""Each engine's fastest way to write many rows, used by the repository for ingest and for storing results.

PostgreSQL gets COPY (asyncpg's `copy_records_to_table`) on the connection of the caller's transaction; SQLite and
MariaDB get the driver's own executemany of one parameterized statement (pymysql rewrites it into multi-row
INSERTs). Rows arrive as plain tuples in the given column order, already converted (JSON as text, naive UTC
times), because per-row SQLAlchemy type processing would cost more than the insert itself. Upserts go through
a temporary table on PostgreSQL, ON CONFLICT on SQLite and ON DUPLICATE KEY on MariaDB.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.dialects.sqlite import DATETIME as SQLITE_DATETIME
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

Row = tuple[Any, ...]

_SQLITE_UNIQUE = 2067  # SQLITE_CONSTRAINT_UNIQUE
_MYSQL_DUPLICATE = 1062  # ER_DUP_ENTRY


async def insert_rows(conn: AsyncConnection, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
    """Insert `rows` into `table` inside the connection's current transaction."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        await _copy(conn, table, columns, rows)
        return
    await conn.exec_driver_sql(_insert_sql(conn, table, columns), list(rows))


def time_value(conn: AsyncConnection, value: datetime) -> Any:
    """`value` (naive UTC) as the bulk path takes it at least cost, for a time that every row of a call shares.

    On SQLite it is the text SQLAlchemy itself stores, made once: handed a datetime, sqlite3's adapter formats it
    again for every row and column, a tenth of an ingest's CPU. COPY and pymysql take the datetime as it is."""
    if conn.dialect.name == "sqlite":
        return _sqlite_time(conn, value)
    return value


def _sqlite_time(conn: AsyncConnection, value: datetime) -> str:
    render = SQLITE_DATETIME().bind_processor(conn.dialect)  # type: ignore[no-untyped-call]
    assert render is not None  # SQLite's DATETIME always renders text
    text: str = render(value)
    return text


async def upsert_rows(
    conn: AsyncConnection, table: str, columns: Sequence[str], key: Sequence[str], rows: Sequence[Row]
) -> None:
    """Insert `rows`, replacing every non-key column of a row whose `key` columns already exist.

    The first store of a batch conflicts with nothing, so it is tried as a plain bulk insert (COPY on PostgreSQL)
    under a savepoint; only when a key already exists does it roll back to the savepoint and upsert.
    """
    if not rows:
        return
    try:
        async with conn.begin_nested():
            await insert_rows(conn, table, columns, rows)
        return
    except Exception as exc:
        if not _is_duplicate_key(exc):
            raise
    updated = [c for c in columns if c not in key]
    if conn.dialect.name == "postgresql":
        await _upsert_postgresql(conn, table, columns, key, updated, rows)
        return
    quote = conn.dialect.identifier_preparer.quote
    if conn.dialect.name == "sqlite":
        sets = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in updated)
        suffix = f" ON CONFLICT ({', '.join(quote(c) for c in key)}) DO UPDATE SET {sets}"
    else:
        sets = ", ".join(f"{quote(c)} = VALUES({quote(c)})" for c in updated)
        suffix = f" ON DUPLICATE KEY UPDATE {sets}"
    await conn.exec_driver_sql(_insert_sql(conn, table, columns) + suffix, list(rows))


def _is_duplicate_key(exc: BaseException) -> bool:
    # asyncpg's COPY error arrives unwrapped (it bypasses SQLAlchemy); the others come as IntegrityError.
    if isinstance(exc, IntegrityError):
        exc = exc.orig or exc
    codes = {getattr(exc, "sqlstate", None), getattr(exc, "sqlite_errorcode", None), exc.args[0] if exc.args else None}
    return bool(codes & {"23505", _SQLITE_UNIQUE, _MYSQL_DUPLICATE})


def _insert_sql(conn: AsyncConnection, table: str, columns: Sequence[str]) -> str:
    quote = conn.dialect.identifier_preparer.quote
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    names = ", ".join(quote(c) for c in columns)
    return f"INSERT INTO {quote(table)} ({names}) VALUES ({', '.join([marker] * len(columns))})"


async def _driver(conn: AsyncConnection) -> Any:
    # The transaction is already open on this connection (the caller wrote before), so COPY joins it.
    raw = await conn.get_raw_connection()
    return raw.driver_connection


async def _copy(conn: AsyncConnection, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
    driver = await _driver(conn)
    await driver.copy_records_to_table(table, records=rows, columns=list(columns))


async def _upsert_postgresql(
    conn: AsyncConnection,
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    updated: Sequence[str],
    rows: Sequence[Row],
) -> None:
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    stage = "bouncer_stage_" + table.lower()
    # COPY into a statement-private copy of the columns, then one set-based upsert: far faster than executemany.
    await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {stage}")
    await conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {stage} ON COMMIT DROP AS SELECT {names} FROM {quote(table)} WITH NO DATA"
    )
    await _copy(conn, stage, columns, rows)
    sets = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in updated)
    conflict = ", ".join(quote(c) for c in key)
    await conn.exec_driver_sql(
        f"INSERT INTO {quote(table)} ({names}) SELECT {names} FROM {stage} "
        f"ON CONFLICT ({conflict}) DO UPDATE SET {sets}"
    )
    await conn.exec_driver_sql(f"DROP TABLE {stage}")
