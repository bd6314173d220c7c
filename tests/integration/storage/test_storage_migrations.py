"""Migrations up and down on every engine, the schema they build against tables.py, and URL handling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from bouncer_queue.bootstrap import prepare_database
from bouncer_queue.config import Settings
from bouncer_queue.domain import Priority, RequestState
from bouncer_queue.errors import ConfigError, StorageError
from bouncer_queue.storage import migrate, revision
from bouncer_queue.storage.db import make_engine, mask_url, normalize_url
from bouncer_queue.storage.repository import Repository
from bouncer_queue.storage.tables import Base

TABLES = {
    "Bouncer_Batches",
    "Bouncer_Queue",
    "Bouncer_Rate_Limit",
    "Bouncer_Results",
    "Bouncer_Dead_Letter_Queue",
    "Bouncer_Health_Metrics",
    "Bouncer_Requests",
    "Bouncer_Api_Tokens",
    "Bouncer_Webhook_Deliveries",
}


async def _table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def _schema_diff(url: str) -> list[Any]:
    def diff(sync: Connection) -> list[Any]:
        context = MigrationContext.configure(sync, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(diff)
    finally:
        await engine.dispose()


async def test_upgrade_creates_exactly_our_tables_and_downgrade_removes_them(empty_database: str) -> None:
    assert await revision.current(empty_database) is None

    await migrate.upgrade(empty_database)
    assert await revision.current(empty_database) == await migrate.head() == revision.HEAD
    assert await _table_names(empty_database) == TABLES | {revision.VERSION_TABLE}

    await migrate.downgrade(empty_database)
    assert await revision.current(empty_database) is None
    assert await _table_names(empty_database) <= {revision.VERSION_TABLE}

    await migrate.upgrade(empty_database)
    assert TABLES <= await _table_names(empty_database)


async def test_a_command_refuses_a_database_behind_the_head_unless_it_may_migrate_it(
    empty_database: str, tmp_path: Path
) -> None:
    settings = Settings(_env_file=None, database_url=empty_database, state_dir=tmp_path / "state")
    with pytest.raises(ConfigError, match="not at the latest schema"):
        await prepare_database(settings)
    assert await revision.current(empty_database) is None  # refused: nothing written

    await migrate.upgrade(empty_database, "0006")
    with pytest.raises(ConfigError, match="not at the latest schema"):
        await prepare_database(settings)

    await prepare_database(settings, auto_migrate=True)
    assert await revision.current(empty_database) == revision.HEAD
    await prepare_database(settings)  # at the head: accepted as it is


async def test_0002_gives_requests_stored_before_it_a_row_built_from_their_batches(empty_database: str) -> None:
    await migrate.upgrade(empty_database, "0001")
    engine = make_engine(empty_database)
    try:
        async with engine.begin() as conn:
            for status, quantity in (("downloaded", 3), ("dead", 2), ("pending", 4)):
                request_id = "open" if status == "pending" else "done"
                await conn.execute(
                    text(
                        'INSERT INTO "Bouncer_Batches" (request_id, user_id, priority, delay_ms, status, quantity, '
                        "duplicates, processed, attempts, retries, created_at, updated_at) VALUES "
                        f"('{request_id}', 'u7', 2, 0, '{status}', {quantity}, 0, 0, 0, 0, "
                        "'2026-01-01 00:00:00', '2026-01-01 00:00:00')".replace('"', _quote(conn))
                    )
                )
    finally:
        await engine.dispose()

    await migrate.upgrade(empty_database)

    engine = make_engine(empty_database)
    try:
        repo = Repository(engine)
        done, still_open = await repo.get_request("done"), await repo.get_request("open")
    finally:
        await engine.dispose()
    assert done is not None and still_open is not None
    assert (done.status, done.total_emails, done.batch_count, done.user_id) == (RequestState.FINISHED, 5, 2, "u7")
    assert (still_open.status, still_open.total_emails, still_open.priority) == (RequestState.ACTIVE, 4, Priority.HIGH)


async def _foreign_keys(url: str, table: str = "Bouncer_Queue") -> list[str | None]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            keys = await conn.run_sync(lambda sync: inspect(sync).get_foreign_keys(table))
    finally:
        await engine.dispose()
    return [key["name"] for key in keys]


async def test_0006_drops_the_queue_batch_key_and_its_downgrade_restores_it(empty_database: str) -> None:
    await migrate.upgrade(empty_database, "0005")
    assert await _foreign_keys(empty_database) == ["fk_Bouncer_Queue_batch_id"]

    await migrate.upgrade(empty_database, "0006")
    assert await _foreign_keys(empty_database) == []

    await migrate.downgrade(empty_database, "0005")
    assert await _foreign_keys(empty_database) == ["fk_Bouncer_Queue_batch_id"]


async def test_0007_drops_the_results_batch_key_and_its_downgrade_restores_it(empty_database: str) -> None:
    await migrate.upgrade(empty_database, "0006")
    assert await _foreign_keys(empty_database, "Bouncer_Results") == ["fk_Bouncer_Results_batch_id"]

    await migrate.upgrade(empty_database, "0007")
    assert await _foreign_keys(empty_database, "Bouncer_Results") == []

    await migrate.downgrade(empty_database, "0006")
    assert await _foreign_keys(empty_database, "Bouncer_Results") == ["fk_Bouncer_Results_batch_id"]


def _quote(conn: AsyncConnection) -> str:
    return "`" if conn.dialect.name == "mysql" else '"'


async def test_migrated_schema_matches_the_models(storage_url: str) -> None:
    differences = [d for d in await _schema_diff(storage_url) if not _is_version_table(d)]
    assert differences == []


def _is_version_table(difference: Any) -> bool:
    return difference[0] == "remove_table" and difference[1].name == revision.VERSION_TABLE


def test_plain_urls_map_to_the_async_drivers() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+asyncpg"
    assert normalize_url("mysql://u@h/db").drivername == "mysql+aiomysql"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"
    assert normalize_url("postgresql+asyncpg://u@h/db").drivername == "postgresql+asyncpg"


def test_mask_url_hides_the_password() -> None:
    masked = mask_url("postgresql://user:s3cr%40t@db.example:5432/app")
    assert "s3cr" not in masked
    assert "***" in masked
    assert "db.example" in masked


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bouncer:hunter2-secret@127.0.0.1:1/app",
        "mysql://bouncer:hunter2-secret@127.0.0.1:1/app",
    ],
)
async def test_unreachable_database_raises_storage_error_without_the_password(url: str) -> None:
    engine = make_engine(url)
    try:
        with pytest.raises(StorageError) as caught:
            await Repository(engine).ping()
    finally:
        await engine.dispose()
    assert "hunter2-secret" not in str(caught.value)
    assert "***" in str(caught.value)
    assert caught.value.__cause__ is None

    with pytest.raises(StorageError) as caught:
        await migrate.upgrade(url)
    assert "hunter2-secret" not in str(caught.value)

    with pytest.raises(StorageError) as caught:  # each command's start-up check of the schema revision
        await revision.current(url)
    assert "hunter2-secret" not in str(caught.value)


@pytest.mark.postgres
async def test_migrations_and_the_start_up_revision_check_connect_with_database_ssl(
    postgres_url: str, tmp_path: Path
) -> None:
    # The test server has TLS off, so a connection that honours DATABASE_SSL=require is refused on TLS, where one
    # that ignored the setting would get as far as the database (absent here) in plain text.
    url = postgres_url.rsplit("/", 1)[0] + "/bq_no_such_database"
    with pytest.raises(StorageError, match="SSL"):
        await migrate.upgrade(url, ssl="require")
    with pytest.raises(StorageError, match="SSL"):
        await migrate.downgrade(url, ssl="require")
    with pytest.raises(StorageError, match="SSL"):
        await revision.current(url, ssl="require")

    settings = Settings(_env_file=None, database_url=url, database_ssl="require", state_dir=tmp_path / "state")
    with pytest.raises(StorageError, match="SSL"):
        await prepare_database(settings, auto_migrate=True)
