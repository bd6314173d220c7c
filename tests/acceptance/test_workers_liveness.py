"""Liveness against running processes: each `workers` process keeps a heartbeat in Redis, `workers list` shows the
live ones, `health` is unhealthy when work waits and no worker lives, and `health` reads the credits the scheduled
check recorded instead of asking Bouncer (counted in the simulator's own request log), unless `--live`."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ops_support import OpsSystem, eventually, make_system

from bouncer_queue.simulator import SimulatorConfig

pytestmark = [pytest.mark.redis, pytest.mark.slow]

KEY = "liveness-key-77c1"
FAST_BEATS = {"HEARTBEAT_INTERVAL_SECONDS": "0.3", "HEARTBEAT_TTL_SECONDS": "1.5"}


@pytest.fixture
def system(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str, queue_prefix: str) -> Iterator[OpsSystem]:
    config = SimulatorConfig(api_keys=(KEY,), speed=5_000.0, credits=9_000)
    yield from make_system(monkeypatch, tmp_path, redis_url, queue_prefix, config, BOUNCER_API_KEY=KEY, **FAST_BEATS)


def _credit_calls(system: OpsSystem) -> int:
    requests: list[dict[str, Any]] = httpx.get(f"{system.simulator.root_url}/__simulator/requests", timeout=10).json()
    return sum(1 for r in requests if r["path"].endswith("/credits") and r["method"] == "GET")


def _health(system: OpsSystem, *args: str) -> tuple[int, dict[str, Any]]:
    result = system.cli("health", "--json", *args)
    return result.exit_code, json.loads(result.stdout)


def test_heartbeats_workers_list_and_health_verdicts(system: OpsSystem) -> None:
    assert system.cli("db", "upgrade").exit_code == 0
    assert json.loads(system.cli("workers", "list", "--json").stdout) == []
    emails = system.list_file("two.csv", ["a@sandbox.usebouncer.com", "b@sandbox.usebouncer.com"])
    assert system.cli("submit", str(emails)).exit_code == 0

    code, report = _health(system)
    assert code == 1 and report["status"] == "unhealthy"
    assert report["snapshot"]["workers_alive"] == 0
    assert any("no workers process is alive while 1 jobs wait" in p for p in report["problems"]), report

    with system.workers(HEALTH_CHECK_INTERVAL_SECONDS="1") as workers:
        [listed] = json.loads(system.cli("workers", "list", "--json").stdout)
        assert listed["pid"] == workers.process.pid and listed["version"] == "0.1.0"
        assert sorted(listed["queues"]) == [
            "batch-download",
            "batch-status-check",
            "cleanup-tasks",
            "email-verification",
        ]
        assert "live workers" in system.cli("workers", "list").stdout

        # The scheduled check asks Bouncer and records the figure; health then reads it without asking.
        recorded = eventually(lambda: (r := _health(system)[1])["snapshot"]["credits_source"] == "recorded" and r)
        assert recorded["status"] != "unhealthy" and recorded["snapshot"]["workers_alive"] == 1
        assert recorded["snapshot"]["credits_left"] > 0
    # A clean stop withdraws the heartbeat at once.
    assert json.loads(system.cli("workers", "list", "--json").stdout) == []
    # Stopped, the workers run no scheduled check while we count. (Frozen with SIGSTOP instead, they could be
    # frozen inside a SQLite write: `health` then found the database locked and no recorded figure.)
    before = _credit_calls(system)
    for _ in range(12):  # more than Bouncer's 10 credit checks a minute
        code, report = _health(system)
        assert report["snapshot"]["credits_source"] == "recorded"
    assert _credit_calls(system) == before
    code, live = _health(system, "--live")
    assert live["snapshot"]["credits_source"] == "live" and _credit_calls(system) == before + 1


def test_a_killed_workers_heartbeat_expires(system: OpsSystem) -> None:
    assert system.cli("db", "upgrade").exit_code == 0
    with system.workers() as workers:
        eventually(lambda: len(json.loads(system.cli("workers", "list", "--json").stdout)) == 1)
        os.kill(workers.process.pid, signal.SIGKILL)
        workers.process.wait(timeout=30)
        eventually(lambda: json.loads(system.cli("workers", "list", "--json").stdout) == [])
