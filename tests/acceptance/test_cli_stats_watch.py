"""`bouncer-queue stats --watch`: the real script refreshes its table as the queues change, and Ctrl+C ends it
cleanly (exit 0, as `watch` does), against real Redis and a SQLite file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops_support import SCRIPT, OpsSystem, eventually, make_system

from bouncer_queue.simulator import SimulatorConfig

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def system(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str, queue_prefix: str) -> Iterator[OpsSystem]:
    yield from make_system(monkeypatch, tmp_path, redis_url, queue_prefix, SimulatorConfig(), BATCH_SIZE="1")


def _email_verification_rows(output: str) -> list[list[int]]:
    """The email-verification row of every table printed so far, as its eight counts."""
    return [[int(n) for n in re.findall(r"\d+", line)] for line in output.splitlines() if "email-verification" in line]


def test_watch_shows_changing_counts_and_ctrl_c_exits_0(system: OpsSystem) -> None:
    assert system.cli("db", "upgrade").exit_code == 0
    assert system.cli("pause", "email-verification").exit_code == 0
    out_path, err_path = system.tmp_path / "watch.out", system.tmp_path / "watch.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            [str(SCRIPT), "stats", "--watch", "0.2"], env=dict(os.environ), stdout=out, stderr=err
        )
    try:
        # BullMQ's types: active, completed, delayed, failed, paused, prioritized, waiting, waiting-children
        eventually(lambda: [0, 0, 0, 0, 0, 0, 0, 0] in _email_verification_rows(out_path.read_text()))
        two = system.list_file("two.csv", ["a@example.com", "b@example.com"])
        assert system.cli("submit", str(two)).exit_code == 0
        eventually(lambda: [0, 0, 0, 0, 0, 2, 0, 0] in _email_verification_rows(out_path.read_text()))
        assert process.poll() is None  # still watching
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        finally:
            process.kill()  # a no-op once it exited; a watch left running would load the tests after this one

    output, errors = out_path.read_text(), err_path.read_text()
    assert process.returncode == 0, errors
    assert "queue statistics" in output and "dead-letter" in output and "waiting" in output
    assert "Traceback" not in errors and "interrupted" not in errors
