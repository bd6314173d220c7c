"""A list end to end on a local 3-master Redis Cluster (REDIS_CLUSTER=true): bullmq for Python, our heartbeats,
flags and health all work there, because every key of ours carries QUEUE_PREFIX's hash tag (one slot)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_support import redis_cluster
from ops_support import OpsSystem, make_system

from bouncer_queue.simulator import SimulatorConfig

pytestmark = [pytest.mark.slow]

KEY = "cluster-key-51aa"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[int]]:
    with redis_cluster(tmp_path / "cluster") as ports:
        yield ports


@pytest.fixture
def system(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, queue_prefix: str, cluster: list[int]
) -> Iterator[OpsSystem]:
    config = SimulatorConfig(api_keys=(KEY,), speed=5_000.0)
    url = f"redis://127.0.0.1:{cluster[0]}/0"
    yield from make_system(
        monkeypatch, tmp_path, url, queue_prefix, config, BOUNCER_API_KEY=KEY, REDIS_CLUSTER="true", BATCH_SIZE="2"
    )


def test_a_list_runs_end_to_end_on_a_redis_cluster(system: OpsSystem, cluster: list[int]) -> None:
    assert system.cli("db", "upgrade").exit_code == 0
    emails = [f"{s}@sandbox.usebouncer.com" for s in ("deliverable", "undeliverable", "unknown")]
    with system.workers() as workers:
        done = system.cli("submit", str(system.list_file("three.csv", emails)), "--request-id", "c1", "--wait")
        assert done.exit_code == 0, done.stderr + workers.logs()[-3000:]
        [listed] = json.loads(system.cli("workers", "list", "--json").stdout)
        assert listed["pid"] == workers.process.pid
        health = system.cli("health", "--json")
        assert health.exit_code == 0, health.stdout
        assert json.loads(health.stdout)["snapshot"]["workers_alive"] == 1
        stats = system.cli_json("stats")
        assert stats["batch-download"]["completed"] == 2
    troubles = [
        r for r in workers.json_logs() if r["level"] in ("ERROR", "CRITICAL") or "failed" in r.get("action", "")
    ]
    assert troubles == []
    out = system.tmp_path / "c1.json"
    assert system.cli("results", "c1", "--format", "json", "--output", str(out)).exit_code == 0
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert {(r["email"], r["status"]) for r in rows} == {
        ("deliverable@sandbox.usebouncer.com", "deliverable"),
        ("undeliverable@sandbox.usebouncer.com", "undeliverable"),
        ("unknown@sandbox.usebouncer.com", "unknown"),
    }
