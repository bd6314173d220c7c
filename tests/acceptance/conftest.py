"""Fixtures shared by the acceptance tests: `system`, an in-process bouncer-queue on real Redis and SQLite, and
`database`, a PostgreSQL database of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pipeline_support import System, postgres_database


@pytest.fixture
async def system(redis_url: str, queue_prefix: str, tmp_path: Path) -> AsyncIterator[System]:
    async with System(redis_url, queue_prefix, tmp_path) as built:
        yield built


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[str]:
    async with postgres_database(postgres_url) as url:
        yield url
