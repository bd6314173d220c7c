"""Storage fixtures: a fresh, migrated database per test on every engine (SQLite file, PostgreSQL, MariaDB).

PostgreSQL and MariaDB tests each get a database of their own, created next to `test` and dropped afterwards,
so nothing else in the shared server is touched. `storage_url` is parametrized over the three engines; the
PostgreSQL and MariaDB cases carry their markers and follow tests/conftest.py's skip-or-fail rule.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bouncer_queue.storage import migrate
from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.repository import Repository

ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
]


async def _create_server_database(base_url: str) -> str:
    name = f"bq_test_{uuid.uuid4().hex[:12]}"
    engine = make_engine(base_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            charset = " CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" if conn.dialect.name == "mysql" else ""
            await conn.execute(text(f"CREATE DATABASE {name}{charset}"))
    finally:
        await engine.dispose()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


async def _drop_server_database(base_url: str, url: str) -> None:
    name = make_url(url).database
    engine = make_engine(base_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            force = " WITH (FORCE)" if conn.dialect.name == "postgresql" else ""
            await conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
    finally:
        await engine.dispose()


@pytest.fixture
async def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a new, empty database on the engine named by the test's parameter."""
    engine_name: str = request.param
    if engine_name == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'state' / 'bouncer.db'}"
        return
    base_url = request.getfixturevalue("postgres_url" if engine_name == "postgresql" else "mysql_url")
    url = await _create_server_database(base_url)
    try:
        yield url
    finally:
        await _drop_server_database(base_url, url)


@pytest.fixture
async def storage_url(empty_database: str) -> str:
    """A new database on one engine, migrated to head."""
    await migrate.upgrade(empty_database)
    return empty_database


@pytest.fixture
async def repo_factory(storage_url: str) -> AsyncIterator[Callable[[], Repository]]:
    """Builds Repositories on the test's database (each on its own engine); disposes of them all afterwards."""
    engines = []

    def build() -> Repository:
        engine = make_engine(storage_url, pool_size=10)
        engines.append(engine)
        return Repository(engine)

    yield build
    for engine in engines:
        await engine.dispose()


@pytest.fixture
def repo(repo_factory: Callable[[], Repository]) -> Repository:
    return repo_factory()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "empty_database" in metafunc.fixturenames:
        engines = ENGINES
        if metafunc.definition.get_closest_marker("server_engines"):
            engines = [engine for engine in ENGINES if engine.id != "sqlite"]
        metafunc.parametrize("empty_database", engines, indirect=True)
