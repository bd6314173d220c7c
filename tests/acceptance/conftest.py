"""Fixtures shared by the acceptance tests: `system`, an in-process bouncer-queue on real Redis and SQLite,
`database`, a PostgreSQL database of the test's own, and `http`, a running serve + workers stack."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from http_support import HttpStack, http_stack
from pipeline_support import System, postgres_database


@pytest.fixture
async def system(redis_url: str, queue_prefix: str, tmp_path: Path) -> AsyncIterator[System]:
    async with System(redis_url, queue_prefix, tmp_path) as built:
        yield built


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[str]:
    async with postgres_database(postgres_url) as url:
        yield url


@pytest.fixture(scope="session")
def http(postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpStack]:
    """`serve` + `workers` + the simulator on a PostgreSQL database, shared by the HTTP tests of a session."""
    with http_stack(postgres_url, redis_url, tmp_path_factory.mktemp("http")) as stack:
        yield stack
