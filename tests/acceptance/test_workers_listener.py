"""The workers process's HTTP listener, against running processes: /livez, /readyz and /metrics answer, other paths
404, and a port already taken (a second `workers`, or `verify` beside running workers) is a one-line error that
names METRICS_PORT, not a traceback."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ops_support import SCRIPT, OpsSystem, free_port, make_system

from bouncer_queue.simulator import SimulatorConfig

pytestmark = [pytest.mark.redis, pytest.mark.slow]

KEY = "listener-key-5d1e"


@pytest.fixture
def system(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str, queue_prefix: str) -> Iterator[OpsSystem]:
    config = SimulatorConfig(api_keys=(KEY,), speed=5_000.0)
    yield from make_system(monkeypatch, tmp_path, redis_url, queue_prefix, config, BOUNCER_API_KEY=KEY)


def test_probes_answer_and_a_taken_port_is_a_one_line_error(system: OpsSystem) -> None:
    assert system.cli("db", "upgrade").exit_code == 0
    port = free_port()
    system.set(METRICS_PORT=str(port))
    with system.workers():
        base = f"http://127.0.0.1:{port}"
        live = httpx.get(f"{base}/livez", timeout=10)
        assert live.status_code == 200, live.text
        assert live.json()["checks"] == {"event_loop": "ok", "heartbeat": "ok"}
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["checks"] == {"redis": "ok", "database": "ok"}
        assert httpx.get(f"{base}/metrics", timeout=10).status_code == 200
        assert httpx.get(f"{base}/", timeout=10).status_code == 404
        assert httpx.get(f"{base}/health", timeout=10).status_code == 404

        second = subprocess.run([str(SCRIPT), "workers"], capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        expected = f"METRICS_PORT: 127.0.0.1:{port} is already in use"
        assert expected in second.stderr and "Traceback" not in second.stderr, second.stderr

        emails = system.list_file("one.csv", ["a@sandbox.usebouncer.com"])
        verify = system.cli("verify", str(emails))
        assert verify.exit_code == 1
        assert expected in verify.stderr and "Traceback" not in verify.stderr, verify.stderr
