"""`cancel REQUEST_ID` and `purge QUEUE` against a running system: real Redis, a SQLite file, the simulator on a
port, workers in a subprocess. What Bouncer was asked is counted from the simulator's own request log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ops_support import OpsSystem, eventually, make_system
from typer.testing import CliRunner

from bouncer_queue.interfaces.cli import app
from bouncer_queue.simulator import SimulatorConfig

pytestmark = [pytest.mark.redis, pytest.mark.slow]

KEY = "cancel-key-5e0c"
BATCH_PATH = "/v1.1/email/verify/batch"


@pytest.fixture
def system(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str, queue_prefix: str) -> Iterator[OpsSystem]:
    # Slow batches (10 addresses at 0.2 a second each): the first two are still running at Bouncer when the
    # request is cancelled, and the other four wait for a slot (two at a time).
    config = SimulatorConfig(api_keys=(KEY,), speed=0.2, queue_delay_seconds=0.0)
    yield from make_system(
        monkeypatch,
        tmp_path,
        redis_url,
        queue_prefix,
        config,
        BOUNCER_API_KEY=KEY,
        BATCH_SIZE="10",
        MAX_CONCURRENT_BATCHES="2",
    )


def simulator_log(system: OpsSystem) -> list[dict[str, Any]]:
    answer = httpx.get(system.simulator.base_url.removesuffix("/v1.1") + "/__simulator/requests", timeout=10)
    return list(answer.json())


def creates(log: list[dict[str, Any]]) -> int:
    return sum(1 for r in log if r["method"] == "POST" and r["path"] == BATCH_PATH)


def finishes(log: list[dict[str, Any]]) -> list[int]:
    return [r["status"] for r in log if r["method"] == "POST" and r["path"].endswith("/finish")]


def email_states(system: OpsSystem, request_id: str) -> dict[str, int]:
    """The request's rows by state, from its export."""
    progress = system.cli("results", request_id, "--format", "ndjson")
    assert progress.exit_code == 0, progress.stderr
    states: dict[str, int] = {}
    for line in progress.stdout.splitlines():
        state = line.split('"state": "')[1].split('"')[0]
        states[state] = states.get(state, 0) + 1
    return states


def waiting(system: OpsSystem) -> int:
    """Jobs ready to run (`stats --json` gives BullMQ's own counts: jobs with a priority are `prioritized`)."""
    counts = system.counts()
    return counts["waiting"] + counts["prioritized"]


def test_cancel_sends_nothing_more_and_finishes_the_batches_at_bouncer(system: OpsSystem) -> None:
    assert system.cli("db", "upgrade").exit_code == 0
    listing = system.list_file("list.csv", [f"person{n}@example.com" for n in range(60)])
    with system.workers():
        submitted = system.cli("submit", str(listing))
        assert submitted.exit_code == 0, submitted.stderr
        request_id = submitted.stdout.strip().splitlines()[-1]
        eventually(lambda: email_states(system, request_id).get("submitted", 0) == 20)  # two batches at Bouncer

        cancelled = system.cli("cancel", request_id)

        assert cancelled.exit_code == 0, cancelled.stderr
        assert "4 batches will not be sent, 2 batches at Bouncer finished early" in cancelled.stdout
        # The two finished batches complete at Bouncer and their verified results are stored.
        eventually(lambda: email_states(system, request_id).get("submitted", 0) == 0, timeout=60)
        # Every create-batch job of the request has run (the four waiting ones woke, saw it cancelled, sent nothing).
        eventually(
            lambda: sum(system.counts()[s] for s in ("waiting", "prioritized", "delayed", "active")) == 0, timeout=60
        )

    log = simulator_log(system)
    assert creates(log) == 2
    assert finishes(log) == [202, 202]
    states = email_states(system, request_id)
    assert states.get("cancelled") == 40
    assert states.get("completed", 0) + states.get("failed", 0) == 20
    again = system.cli("cancel", request_id)
    assert again.exit_code == 0 and "0 batches will not be sent, 0 batches at Bouncer finished early" in again.stdout


def test_purge_removes_waiting_jobs_after_confirmation(system: OpsSystem) -> None:
    assert system.cli("db", "upgrade").exit_code == 0
    listing = system.list_file("list.csv", [f"person{n}@example.com" for n in range(30)])
    assert system.cli("submit", str(listing)).exit_code == 0  # no workers: three create-batch jobs wait
    assert waiting(system) == 3

    declined = CliRunner().invoke(app, ["purge", "email-verification"], input="n\n")
    assert declined.exit_code == 1 and waiting(system) == 3

    purged = system.cli("purge", "email-verification", "--yes")

    assert purged.exit_code == 0 and "3 jobs of email-verification removed" in purged.stdout
    assert waiting(system) == 0
