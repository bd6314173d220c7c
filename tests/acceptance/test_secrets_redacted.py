"""No secret leaves the process: a full `verify` run (API key, Redis and PostgreSQL passwords in their URLs) and
failing runs print and store none of them, while every stage event names its request and batch."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ops_support import SCRIPT, free_port
from pipeline_support import postgres_database
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bouncer_queue.simulator import SimulatorConfig, SimulatorServer
from bouncer_queue.storage.db import make_engine

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

API_KEY = "api-secret-5be07f3c"
REDIS_PASSWORD = "redis-secret-9d41aa"
DB_PASSWORD = "db-secret-27c8e1"
SECRETS = (API_KEY, REDIS_PASSWORD, DB_PASSWORD)


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[str]:
    """A database of the test's own; PostgreSQL trusts local users, so any password in the URL is accepted."""
    async with postgres_database(postgres_url) as url:
        yield make_url(url).set(password=DB_PASSWORD).render_as_string(hide_password=False)


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=120
    )


async def _stored_text(url: str) -> tuple[str, int]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            rows: list[Any] = []
            for table in ("Bouncer_Dead_Letter_Queue", "Bouncer_Health_Metrics", "Bouncer_Batches"):
                rows += (await conn.execute(text(f'SELECT * FROM "{table}"'))).all()
    finally:
        await engine.dispose()
    health_rows = len([row for row in rows if "snapshot" in str(row)])
    return "\n".join(str(row) for row in rows), health_rows


async def test_no_secret_in_output_logs_or_database(
    database: str, redis_url: str, queue_prefix: str, tmp_path: Path
) -> None:
    redis_with_password = redis_url.replace("redis://", f"redis://:{REDIS_PASSWORD}@")  # no ACL: any password works
    listing = tmp_path / "list.csv"
    listing.write_text("email\n" + "\n".join(f"person{i}@example.com" for i in range(25)) + "\n", encoding="utf-8")
    config = SimulatorConfig(api_keys=(API_KEY,), speed=5_000.0, queue_delay_seconds=0.0)
    async with SimulatorServer(config) as simulator:
        env = {
            "BOUNCER_API_KEY": API_KEY,
            "BOUNCER_API_BASE_URL": simulator.base_url,
            "REDIS_URL": redis_with_password,
            "QUEUE_PREFIX": queue_prefix,
            "DATABASE_URL": database,
            "BATCH_SIZE": "10",
            "HEALTH_CHECK_INTERVAL_SECONDS": "0.5",
            "LOG_LEVEL": "DEBUG",
            "LOG_JSON": "true",
        }
        runs = [_run(["db", "upgrade"], env, tmp_path), _run(["verify", str(listing)], env, tmp_path)]
        assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr[-3000:]
        failing = [
            _run(
                ["verify", str(listing), "--force"],  # --force: the first run's results file is there
                env | {"REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"},
                tmp_path,
            ),
            _run(
                ["verify", str(listing), "--force"],
                env | {"DATABASE_URL": _with_port(database, free_port())},
                tmp_path,
            ),
            _run(["health"], env | {"DATABASE_URL": _with_port(database, free_port())}, tmp_path),
        ]
    assert [r.returncode for r in failing] == [1, 1, 1]
    assert "Redis is not reachable" in failing[0].stderr

    output = "\n".join(r.stdout + r.stderr for r in runs + failing)
    stored, health_rows = await _stored_text(database)
    assert health_rows > 0  # the scheduled health check ran and stored its snapshots
    for secret in SECRETS:
        assert secret not in output, secret
        assert secret not in stored, secret

    events = [json.loads(line) for line in runs[1].stderr.splitlines() if line.startswith("{")]
    stage = [e for e in events if str(e.get("action", "")).startswith("batch_")]
    assert {"batch_submitted", "batch_completed", "batch_downloaded"} <= {e["action"] for e in stage}
    assert all(e.get("request_id") and e.get("batch_id") for e in stage), stage


def _with_port(url: str, port: int) -> str:
    return make_url(url).set(port=port).render_as_string(hide_password=False)
