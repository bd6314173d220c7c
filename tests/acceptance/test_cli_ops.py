"""The operations commands against a running system: real Redis, a SQLite file, the simulator, workers in a
subprocess. One scenario walks a request through pause, alerts, failure, retry, cleaning and dead-letter replay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ops_support import OpsSystem, eventually, make_system

from bouncer_queue.queueing.admin import BULLMQ_TYPES
from bouncer_queue.queueing.names import ALL_QUEUES
from bouncer_queue.simulator import SimulatorConfig

pytestmark = [pytest.mark.redis, pytest.mark.slow]

GOOD_KEY = "good-key-secret-4f1d9a"


@pytest.fixture
def system(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str, queue_prefix: str) -> Iterator[OpsSystem]:
    # Bouncer refuses every batch as too large (400): every create-batch fails for good and is dead-lettered.
    config = SimulatorConfig(api_keys=(GOOD_KEY,), speed=5_000.0, queue_delay_seconds=0.0, max_batch_size=0)
    yield from make_system(
        monkeypatch,
        tmp_path,
        redis_url,
        queue_prefix,
        config,
        BOUNCER_API_KEY=GOOD_KEY,
        BATCH_SIZE="1",
        EMAIL_VERIFICATION_LIMIT="0",
    )


def test_db_upgrade_stats_and_unknown_queue(system: OpsSystem) -> None:
    upgraded = system.cli("db", "upgrade")
    assert upgraded.exit_code == 0 and "database at head" in upgraded.stdout

    table = system.cli("stats")
    assert table.exit_code == 0
    assert all(queue in table.stdout for queue in ALL_QUEUES) and "waiting" in table.stdout
    stats = system.cli_json("stats")
    credits = stats.pop("credits")
    assert stats == {q: dict.fromkeys(BULLMQ_TYPES, 0) | {"isPaused": False} for q in ALL_QUEUES}
    assert credits == {"at_bouncer": None, "reserved": 0, "available": None, "spent": 0, "requests": {}}

    for command in (["pause", "nope"], ["resume", "nope"], ["retry-failed", "nope"], ["clean-failed", "nope"]):
        wrong = system.cli(*command)
        assert wrong.exit_code != 0
        assert "email-verification" in wrong.stderr and "dead-letter" in wrong.stderr


def _dead_letters(system: OpsSystem, *extra: str) -> list[dict[str, object]]:
    letters: list[dict[str, object]] = system.cli_json("dlq", "list", *extra)
    return letters


def test_pause_alerts_failures_retry_clean_and_dead_letters(system: OpsSystem) -> None:
    assert system.cli("db", "upgrade").exit_code == 0
    assert system.cli("pause", "email-verification").stdout.strip() == "paused email-verification"
    emails = [f"user{i}@example.com" for i in range(6)]
    assert system.cli("submit", str(system.list_file("six.csv", emails))).exit_code == 0
    # BullMQ's own counts: our jobs carry a priority, so they are "prioritized"; each is counted once.
    assert system.counts() == {
        "active": 0,
        "completed": 0,
        "delayed": 0,
        "failed": 0,
        "paused": 0,
        "prioritized": 6,
        "waiting": 0,
        "waiting-children": 0,
        "isPaused": True,
    }
    assert "email-verification (paused)" in system.cli("stats").stdout

    # Backlog 6 > ALERT_BACKLOG=5: degraded (exit 0), the alert named; also recorded by the scheduled job.
    system.set(ALERT_BACKLOG="5", HEALTH_CHECK_INTERVAL_SECONDS="1")
    report = system.cli_json("health")
    assert report["status"] == "degraded" and report["snapshot"]["backlog"] == 6
    assert [a["name"] for a in report["alerts"]] == ["backlog"]
    with system.workers() as workers:
        history = eventually(lambda: "backlog" in (out := system.cli("health", "--history").stdout) and out)
        assert "degraded" in history
        alert_logs = [r for r in workers.json_logs() if r.get("action") == "alert"]
        assert alert_logs and alert_logs[0]["alert"] == "backlog" and alert_logs[0]["level"] == "WARNING"

        # Resumed, the jobs run and fail for good (Bouncer answers 400): failed jobs and dead letters.
        assert system.cli("resume", "email-verification").stdout.strip() == "resumed email-verification"
        eventually(lambda: system.counts()["failed"] == 6)
        assert system.counts()["isPaused"] is False
        letters = eventually(lambda: len(found := _dead_letters(system)) == 6 and found)
        assert {letter["error_class"] for letter in letters} == {"BadRequest"}
        system.set(ALERT_BACKLOG="1000", ALERT_FAILED_JOBS="5")
        report = system.cli_json("health")
        assert [a["name"] for a in report["alerts"]] == ["failed_jobs"] and report["snapshot"]["failed_jobs"] == 6

        assert "0 failed jobs of email-verification removed" in system.cli("clean-failed", "email-verification").stdout
        assert "6 failed jobs of email-verification retried" in system.cli("retry-failed", "email-verification").stdout
        # A dead batch's retried job has nothing to do: it completes.
        eventually(lambda: system.counts()["failed"] == 0 and system.counts()["completed"] == 6)

        # Replaying one letter resubmits its batch, which fails again: a new failed job and a new letter.
        first = letters[-1]["id"]
        assert f"dead letter {first} replayed" in system.cli("dlq", "replay", str(first)).stdout
        assert system.cli("dlq", "replay", str(first)).exit_code == 1  # already replayed
        eventually(lambda: system.counts()["failed"] == 1 and len(_dead_letters(system)) == 6)
        assert (
            "1 failed jobs of email-verification removed"
            in system.cli("clean-failed", "email-verification", "--hours", "0").stdout
        )
        assert system.counts()["failed"] == 0

        assert "6 dead letters replayed" in system.cli("dlq", "replay", "--all").stdout
        eventually(lambda: len(_dead_letters(system)) == 6 and system.counts()["failed"] == 6)
        assert len(_dead_letters(system, "--all")) == 13
    assert workers.process.returncode == 0
    stored = [str(letter["message"]) for letter in _dead_letters(system, "--all")]
    assert not [m for m in stored if GOOD_KEY in m] and GOOD_KEY not in workers.logs()


def test_recover_rebuilds_lost_jobs(system: OpsSystem) -> None:
    assert system.cli("db", "upgrade").exit_code == 0
    assert system.cli("submit", str(system.list_file("two.csv", ["a@example.com", "b@example.com"]))).exit_code == 0
    assert system.counts()["prioritized"] == 2
    _delete_queue_keys(system)  # as if Redis lost its data
    assert system.counts()["prioritized"] == 0
    recovered = system.cli("recover")
    assert recovered.exit_code == 0 and "2 jobs offered" in recovered.stdout
    assert system.counts()["prioritized"] == 2


def _delete_queue_keys(system: OpsSystem) -> None:
    import asyncio

    import redis.asyncio as aioredis

    from bouncer_queue.config import Settings

    settings = Settings()

    async def delete() -> None:
        client = aioredis.from_url(settings.external_redis_url() or "")
        try:
            keys = [k async for k in client.scan_iter(match=f"{settings.queue_prefix}:email-verification:*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    asyncio.run(delete())
