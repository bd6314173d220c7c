"""Graceful shutdown (project issue #4, part 4): SIGTERM during work exits 0 and loses nothing.

One `bouncer-queue workers` process is stopped while batches are still pending and at Bouncer; running jobs
finish, nothing is left half-submitted, and a second process started later finishes the request, creating no
batch twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pipeline_support import (
    WorkerProcess,
    assert_results_match_simulator,
    batch_states,
    create_calls,
    dead_letters,
    emails_finished,
    eventually,
    make_emails,
    run_cli,
    running_simulator,
    worker_env,
    write_csv,
)

from bouncer_queue.simulator import SimulatorConfig, SimulatorServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

EMAILS = 1_000
BATCHES = 5


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    # 100 addresses a second: each batch of 200 spends 2 s at Bouncer, so a SIGTERM lands mid-request.
    async with running_simulator(
        SimulatorConfig(api_keys=("acceptance-key",), speed=100.0, window_seconds=6)
    ) as server:
        yield server


async def test_sigterm_mid_work_loses_nothing_and_a_restart_finishes(
    database: str, simulator: SimulatorServer, redis_url: str, queue_prefix: str, tmp_path: Path
) -> None:
    env = worker_env(
        database_url=database,
        redis_url=redis_url,
        prefix=queue_prefix,
        base_url=simulator.base_url,
        state_dir=tmp_path / "state",
        batch_size=EMAILS // BATCHES,
        max_concurrent_batches=2,
        poll_interval_seconds=0.3,
        rate_limit_window_seconds=6,
        queue_limit_duration_ms=6_000,
        health_check_interval_seconds=2,
        cleanup_interval_seconds=3,
        shutdown_grace_seconds=20,
    )
    run_cli(["db", "upgrade"], env, tmp_path)
    request_id = run_cli(["submit", str(write_csv(tmp_path / "list.csv", make_emails(EMAILS, "stop")))], env, tmp_path)
    request_id = request_id.strip().splitlines()[-1]

    first = WorkerProcess(env, tmp_path, "workers-first")
    try:

        async def mid_work() -> bool:
            assert first.alive(), first.output()
            states = list((await batch_states(database)).values())
            return "downloaded" in states and "pending" in states

        await eventually(mid_work, "one batch done while others are pending", timeout=90)
        assert first.terminate() == 0, first.output()
    finally:
        first.kill()
    states = await batch_states(database)
    assert "submitting" not in states.values()  # no create call was cut off half-way
    assert set(states.values()) != {"downloaded"}  # work remained for the next process
    assert await dead_letters(database) == []

    second = WorkerProcess(env, tmp_path, "workers-second")
    try:

        async def finished() -> bool:
            assert second.alive(), second.output()
            return await emails_finished(database, request_id) == EMAILS

        await eventually(finished, f"{EMAILS} addresses verified after the restart", timeout=90)
        assert second.terminate() == 0, second.output()
    finally:
        second.kill()

    await assert_results_match_simulator(database, request_id, EMAILS)
    assert await dead_letters(database) == []
    assert create_calls(simulator) == [200] * BATCHES
    assert simulator.state.batch_creations == BATCHES
