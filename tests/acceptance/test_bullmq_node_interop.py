"""Node BullMQ (from npm) reads what our Python workers do on the same Redis: the same job counts as `stats --json`,
our workers in `Queue.getWorkers()` (what bull-board's workers tab lists), BullMQ's own per-minute metrics, and a
job's return value (a summary, not null)."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from ops_support import OpsSystem, make_system

from bouncer_queue.queueing.admin import BULLMQ_TYPES
from bouncer_queue.simulator import SimulatorConfig
from tool_support import require_tool

pytestmark = [pytest.mark.redis, pytest.mark.slow]

KEY = "interop-key-0b6a"
#: Node BullMQ 6 loads ioredis only when asked; in an ES module it wants a client instance.
NODE_PACKAGES = ("bullmq@6", "ioredis@5")

NODE_SCRIPT = """
import { Queue } from 'bullmq';
import IORedis from 'ioredis';
const [host, port, prefix, ...names] = process.argv.slice(2);
const connection = new IORedis({ host, port: Number(port), maxRetriesPerRequest: null });
const types = %s;
const out = {};
for (const name of names) {
  const queue = new Queue(name, { connection, prefix });
  const completed = await queue.getJobs(['completed'], 0, -1);
  out[name] = {
    counts: await queue.getJobCounts(...types),
    isPaused: await queue.isPaused(),
    workers: (await queue.getWorkers()).map(w => w.rawname),
    metricsCompleted: (await queue.getMetrics('completed')).meta.count,
    returnValues: completed.map(j => j.returnvalue),
  };
  await queue.close();
}
console.log(JSON.stringify(out));
await connection.quit();
"""


@pytest.fixture(scope="session")
def node_bullmq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with Node BullMQ installed from npm and our reader script."""
    require_tool("node", "Node.js runs Node BullMQ")
    npm = require_tool("npm", "npm installs Node BullMQ")
    where = tmp_path_factory.mktemp("node-bullmq")
    (where / "package.json").write_text('{"name": "interop", "private": true, "type": "module"}', encoding="utf-8")
    installed = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--silent", *NODE_PACKAGES],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr
    (where / "read.mjs").write_text(NODE_SCRIPT % json.dumps(list(BULLMQ_TYPES)), encoding="utf-8")
    return where


@pytest.fixture
def system(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str, queue_prefix: str) -> Iterator[OpsSystem]:
    config = SimulatorConfig(api_keys=(KEY,), speed=5_000.0)
    yield from make_system(monkeypatch, tmp_path, redis_url, queue_prefix, config, BOUNCER_API_KEY=KEY, BATCH_SIZE="2")


def _node_view(node_dir: Path, redis_url: str, prefix: str, *queues: str) -> dict[str, Any]:
    parts = urlsplit(redis_url)
    args = [parts.hostname or "127.0.0.1", str(parts.port or 6379), prefix, *queues]
    ran = subprocess.run(["node", "read.mjs", *args], cwd=node_dir, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    view: dict[str, Any] = json.loads(ran.stdout)
    return view


def test_node_bullmq_sees_our_counts_workers_metrics_and_return_values(
    system: OpsSystem, node_bullmq: Path, redis_url: str, queue_prefix: str
) -> None:
    assert system.cli("db", "upgrade").exit_code == 0
    emails = [f"{s}@sandbox.usebouncer.com" for s in ("deliverable", "undeliverable", "risky")]
    queues = ("email-verification", "batch-download")
    with system.workers() as workers:
        done = system.cli("submit", str(system.list_file("three.csv", emails)), "--wait")
        assert done.exit_code == 0, done.stderr
        stats = system.cli_json("stats")
        node = _node_view(node_bullmq, redis_url, queue_prefix, *queues)
        pid = workers.process.pid

    for queue in queues:
        ours = stats[queue]
        assert node[queue]["counts"] == {t: ours[t] for t in BULLMQ_TYPES}
        assert node[queue]["isPaused"] is ours["isPaused"] is False
        # Each worker names its connections the Node way, with host:pid as the worker's name.
        names = node[queue]["workers"]
        assert names and all(n.endswith(f":w:{socket.gethostname()}:{pid}"[:128]) for n in names), names
        assert node[queue]["metricsCompleted"] == ours["completed"] == 2  # BATCH_SIZE 2: two batches

    downloads = node["batch-download"]["returnValues"]
    assert len(downloads) == 2
    for summary in downloads:
        assert summary["job_name"] == "download-batch-results" and summary["state"] == "downloaded"
        assert summary["retries"] == 0 and isinstance(summary["batch_id"], int)
    assert sorted(s["emails"] for s in downloads) == [1, 2]
