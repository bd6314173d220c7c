"""DATABASE_READ_URL against a real PostgreSQL streaming replica the test starts: a list runs end to end with the
writes on the primary, and the monitoring reads (progress, `results` exports, `dlq list`, `health`) are served by
the replica. Pausing the replica's WAL replay proves it: a request the primary holds stays invisible to
`results` until replay resumes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops_support import OpsSystem, eventually, make_system
from replica_support import Replicated, streaming_replica

from bouncer_queue.simulator import SimulatorConfig

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

KEY = "replica-key-3f9e"


@pytest.fixture
def replicated() -> Iterator[Replicated]:
    with streaming_replica() as pair:
        yield pair


@pytest.fixture
def system(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str, queue_prefix: str, replicated: Replicated
) -> Iterator[OpsSystem]:
    config = SimulatorConfig(api_keys=(KEY,), speed=5_000.0)
    env = {"DATABASE_URL": replicated.primary_url, "DATABASE_READ_URL": replicated.replica_url}
    yield from make_system(monkeypatch, tmp_path, redis_url, queue_prefix, config, BOUNCER_API_KEY=KEY, **env)


def _exported(system: OpsSystem, request_id: str) -> list[dict[str, object]]:
    out = system.tmp_path / f"{request_id}.json"
    result = system.cli("results", request_id, "--format", "json", "--output", str(out), "--force")
    assert result.exit_code == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(out.read_text(encoding="utf-8"))
    return rows


def test_monitoring_reads_come_from_the_replica(system: OpsSystem, replicated: Replicated) -> None:
    assert system.cli("db", "upgrade").exit_code == 0
    emails = [f"{s}@sandbox.usebouncer.com" for s in ("deliverable", "undeliverable", "risky")]
    listed = system.list_file("three.csv", emails)
    with system.workers():
        done = system.cli("submit", str(listed), "--request-id", "first", "--wait")  # progress read from the replica
        assert done.exit_code == 0, done.stderr
        first = sorted((str(r["email"]), str(r["status"])) for r in _exported(system, "first"))
        assert [email for email, _ in first] == sorted(emails) and (
            "deliverable@sandbox.usebouncer.com",
            "deliverable",
        ) in first
        health = system.cli("health", "--json")
        assert health.exit_code == 0 and json.loads(health.stdout)["snapshot"]["database_ok"] is True

        replicated.replica_sql("select pg_wal_replay_pause()")
        try:
            assert (
                system.cli("submit", str(listed), "--request-id", "second", "--no-cache").exit_code == 0
            )  # to the primary
            eventually(lambda: json.loads(system.cli("stats", "--json").stdout)["batch-download"]["completed"] == 2)
            assert _exported(system, "second") == []  # the replica has not replayed it yet
        finally:
            replicated.replica_sql("select pg_wal_replay_resume()")
        rows = eventually(lambda: _exported(system, "second"))
        assert sorted((str(r["email"]), str(r["status"])) for r in rows) == first
    assert replicated.replica_sql("select pg_is_in_recovery()") == "t"
