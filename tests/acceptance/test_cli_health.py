"""`bouncer-queue health` against a running system: alerts at their thresholds (shown, logged, stored), and exit
code 1 with an unhealthy report, not a crash, when the database or Redis is unreachable."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops_support import OpsSystem, free_port, make_system

from bouncer_queue.config import Settings
from bouncer_queue.ops.logs import configure_logging
from bouncer_queue.service import QueueManager
from bouncer_queue.simulator import SimulatorConfig

pytestmark = pytest.mark.redis

KEY = "health-key-93b2"


@pytest.fixture
def system(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str, queue_prefix: str) -> Iterator[OpsSystem]:
    config = SimulatorConfig(api_keys=(KEY,), credits=4321)
    yield from make_system(monkeypatch, tmp_path, redis_url, queue_prefix, config, BOUNCER_API_KEY=KEY)


async def _take_batch_slots(n: int) -> None:
    async with QueueManager(Settings()) as manager:
        for _ in range(n):
            assert (await manager.runtime.limiter.acquire(["batch"], "test")).allowed


async def _record_health() -> str:
    async with QueueManager(Settings()) as manager:
        return (await manager.get_health_status(live=True, record=True)).status


def test_rate_limit_and_memory_alerts_are_shown_logged_and_stored(system: OpsSystem) -> None:
    assert system.cli("db", "upgrade").exit_code == 0
    system.set(RATE_LIMIT_MAX="2", ALERT_RATE_LIMIT_UTILIZATION="0.9", ALERT_MEMORY_MB="1")
    healthy_before = system.cli("health", "--json", "--live", env={"ALERT_MEMORY_MB": "100000"})
    assert healthy_before.exit_code == 0, healthy_before.stdout
    assert '"status": "healthy"' in healthy_before.stdout and '"credits_left": 4321' in healthy_before.stdout

    asyncio.run(_take_batch_slots(2))  # 2 of 2: utilization 1.0 > 0.9
    result = system.cli("health")
    assert result.exit_code == 0 and "health: degraded" in result.stdout
    report = system.cli_json("health")
    alerts = {a["name"]: a for a in report["alerts"]}
    assert set(alerts) == {"rate_limit_utilization.batch", "memory"}
    assert alerts["rate_limit_utilization.batch"]["value"] == 1.0 and alerts["memory"]["threshold"] == 1

    stream = io.StringIO()
    configure_logging("WARNING", json=True, stream=stream)
    assert asyncio.run(_record_health()) == "degraded"
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    logged = {r["alert"] for r in records if r.get("action") == "alert" and r["level"] == "WARNING"}
    assert logged == {"rate_limit_utilization.batch", "memory"}
    history = system.cli("health", "--history")
    assert history.exit_code == 0
    assert "degraded" in history.stdout and "rate_limit_utilization.batch" in history.stdout


def test_unreachable_database_or_redis_is_unhealthy_with_exit_code_1(system: OpsSystem) -> None:
    down_db = f"postgresql://postgres:db-pass-5521@127.0.0.1:{free_port()}/test"
    result = system.cli("health", env={"DATABASE_URL": down_db})
    assert result.exit_code == 1
    assert "health: unhealthy" in result.stdout and "database is unreachable" in result.stdout
    assert "db-pass-5521" not in result.stdout + result.stderr

    down_redis = f"redis://:redis-pass-8812@127.0.0.1:{free_port()}/0"
    report = system.cli("health", "--json", env={"REDIS_URL": down_redis})
    assert report.exit_code == 1
    assert '"status": "unhealthy"' in report.stdout and "Redis is not reachable" in report.stdout
    assert "redis-pass-8812" not in report.stdout + report.stderr

    unmigrated = system.cli("health")  # the SQLite file was never upgraded
    assert unmigrated.exit_code == 1 and "db upgrade" in unmigrated.stdout
