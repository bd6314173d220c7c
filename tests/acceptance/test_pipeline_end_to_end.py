"""The whole pipeline end to end (project issue #4, part 1): 25,000 addresses through two worker processes.

`bouncer-queue db upgrade` migrates a PostgreSQL database of the test's own; two `bouncer-queue workers`
processes share the test's Redis prefix; `bouncer-queue submit` sends a generated CSV; a simulator on a loopback
port plays Bouncer. Every limit and interval is scaled down by 10 (windows of 6 s instead of 60 s). The test
judges the outcome only: every address has exactly the simulator's result, no batch was created twice, no
window of Bouncer's request log holds more calls than configured, and both processes stop cleanly on SIGTERM.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pipeline_support import (
    WorkerProcess,
    assert_results_match_simulator,
    busiest_window,
    create_calls,
    dead_letters,
    emails_finished,
    eventually,
    make_emails,
    rate_limit_slots,
    recorded,
    run_cli,
    running_simulator,
    worker_env,
    write_csv,
)

from bouncer_queue.simulator import SimulatorConfig, SimulatorServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

EMAILS = 25_000
WINDOW_SECONDS = 6
RATE_LIMIT_MAX = 12  # every batch-endpoint call; low enough that the polling of three batches hits it
RATE_LIMIT_CREATE_MAX = 6


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    # 2,500 addresses a second: a batch of 10,000 runs 4 s at Bouncer, long enough to be polled several times.
    config = SimulatorConfig(api_keys=("acceptance-key",), speed=2_500.0, window_seconds=WINDOW_SECONDS)
    async with running_simulator(config) as server:
        yield server


async def test_25k_emails_through_two_worker_processes(
    database: str, simulator: SimulatorServer, redis_url: str, queue_prefix: str, tmp_path: Path
) -> None:
    env = worker_env(
        database_url=database,
        redis_url=redis_url,
        prefix=queue_prefix,
        base_url=simulator.base_url,
        state_dir=tmp_path / "state",
        batch_size=10_000,
        poll_interval_seconds=0.5,
        rate_limit_window_seconds=WINDOW_SECONDS,
        rate_limit_max=RATE_LIMIT_MAX,
        rate_limit_create_max=RATE_LIMIT_CREATE_MAX,
        rate_limit_credits_max=10,
        queue_limit_duration_ms=WINDOW_SECONDS * 1000,
        health_check_interval_seconds=2,
        cleanup_interval_seconds=3,
        shutdown_grace_seconds=20,
    )
    run_cli(["db", "upgrade"], env, tmp_path)
    workers = [WorkerProcess(env, tmp_path, f"workers-{n}") for n in (1, 2)]
    try:
        listing = write_csv(tmp_path / "list.csv", make_emails(EMAILS, "e2e"))
        request_id = run_cli(["submit", str(listing), "--priority", "HIGH"], env, tmp_path).strip().splitlines()[-1]

        async def finished() -> bool:
            assert all(w.alive() for w in workers), [w.output() for w in workers]
            return await emails_finished(database, request_id) == EMAILS

        await eventually(finished, f"{EMAILS} addresses verified", timeout=150, interval=0.5)
        exit_codes = [w.terminate() for w in workers]
    finally:
        for w in workers:
            w.kill()
    assert exit_codes == [0, 0], [w.output() for w in workers]

    await assert_results_match_simulator(database, request_id, EMAILS)
    assert await dead_letters(database) == []
    assert simulator.state.batch_creations == 3
    assert create_calls(simulator) == [200, 200, 200]
    assert sorted(len(batch) for batch in recorded(simulator).created) == [5_000, 10_000, 10_000]
    # The shared limiter: the two processes together never granted more than the limit in any window.
    granted = await rate_limit_slots(database)
    assert len(granted["batch"]) > RATE_LIMIT_MAX  # the limit was reached, so the checks below mean something
    assert busiest_window(granted["batch"], WINDOW_SECONDS) <= RATE_LIMIT_MAX
    assert busiest_window(granted["create"], WINDOW_SECONDS) <= RATE_LIMIT_CREATE_MAX
    # What Bouncer saw: no call went out without a token. (Bouncer counts a call when it arrives, the limiter when
    # it grants; how far apart those are depends on the machine's load, so windows of arrival times are measured
    # by bench/e2e.py, not asserted here.)
    arrivals = recorded(simulator).arrivals
    assert len([t for t, group in arrivals if group in ("batch", "create")]) <= len(granted["batch"])
    assert len([t for t, group in arrivals if group == "create"]) <= len(granted["create"])
