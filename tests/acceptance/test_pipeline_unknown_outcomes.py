"""Unknown create outcomes (project issue #8): lost create answers and a worker killed mid-call, end to end.

Real processes: the simulator over HTTP, two `bouncer-queue workers` subprocesses, PostgreSQL and Redis. One
worker serves Bouncer's callbacks on CALLBACK_PORT (BOUNCER_CALLBACK_URL points there). Each test judges the run
by the simulator's own state and log and by the ledger: every unique address has exactly one result, the
batches created at the simulator are the batches in the ledger, and the credits charged equal the unique
addresses sent.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from pipeline_support import (
    BATCH_PATH,
    CLI,
    WorkerProcess,
    assert_results_match_simulator,
    dead_letters,
    emails_finished,
    eventually,
    make_emails,
    recorded,
    run_cli,
    running_simulator,
    sql,
    worker_env,
    write_csv,
)

from bouncer_queue.simulator import SimulatorConfig, SimulatorServer
from bouncer_queue.simulator.state import fingerprint

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

API_KEY = "acceptance-key"
CREDITS = 1_000_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(**overrides: Any) -> SimulatorConfig:
    values: dict[str, Any] = {
        "api_keys": (API_KEY,),
        "credits": CREDITS,
        "speed": 500.0,
        "queue_delay_seconds": 0.1,
        "window_seconds": 6,
        # The callback must survive a restarting listener: many patient attempts.
        "callback_attempts": 200,
    }
    return SimulatorConfig(**(values | overrides))


@pytest.fixture
async def env_for(database: str, redis_url: str, queue_prefix: str, tmp_path: Path) -> AsyncIterator[Any]:
    def build(simulator: SimulatorServer, callback_port: int | None, **settings: object) -> dict[str, str]:
        values: dict[str, object] = {
            "batch_size": 50,
            "max_concurrent_batches": 4,
            "poll_interval_seconds": 0.5,
            "rate_limit_window_seconds": 6,
            "rate_limit_create_max": 100,
            "rate_limit_max": 200,
            "queue_limit_duration_ms": 6_000,
            "email_verification_limit": 0,
            "batch_status_limit": 0,
            "batch_download_limit": 0,
            "health_check_interval_seconds": 3_600,
            "cleanup_interval_seconds": 3_600,
            "reconcile_interval_seconds": 2,
            "bouncer_timeout_seconds": 5,
            "bouncer_create_timeout_seconds": 5,
            "bouncer_connect_timeout_seconds": 2,
            "shutdown_grace_seconds": 10,
        }
        if callback_port is not None:
            values["bouncer_callback_url"] = f"http://127.0.0.1:{callback_port}"
        return worker_env(
            database_url=database,
            redis_url=redis_url,
            prefix=queue_prefix,
            base_url=simulator.base_url,
            state_dir=tmp_path / "state",
            **(values | settings),
        )

    yield build


@contextmanager
def workers(env: dict[str, str], cwd: Path, callback_port: int | None, count: int = 2) -> Iterator[list[WorkerProcess]]:
    """`count` workers processes; the first serves the callbacks (when there is a callback port)."""
    with ExitStack() as stack:
        started = []
        for index in range(count):
            own = dict(env)
            if index == 0 and callback_port is not None:
                own["CALLBACK_PORT"] = str(callback_port)
            process = WorkerProcess(own, cwd, f"workers-{index}")
            stack.callback(process.kill)
            started.append(process)
        yield started


def submit(env: dict[str, str], cwd: Path, emails: list[str]) -> str:
    run_cli(["db", "upgrade"], env, cwd)
    output = run_cli(["submit", str(write_csv(cwd / "list.csv", emails))], env, cwd)
    return output.strip().splitlines()[-1]


async def until_finished(database: str, request_id: str, count: int, processes: list[WorkerProcess]) -> None:
    async def finished() -> bool:
        for process in processes:
            assert process.alive(), process.output()
        return await emails_finished(database, request_id) == count

    await eventually(finished, f"{count} addresses finished", timeout=240)


async def assert_paid_once(database: str, simulator: SimulatorServer, unique: int) -> None:
    """Each ledger batch was created at the simulator exactly once (a batch whose create answer was lost and
    never resolved has no Bouncer id), and credits charged equal the unique addresses."""
    snapshot = simulator.state.snapshot()
    created = {batch["id"] for batch in snapshot["batches"]}
    ledger = [row.bouncer_batch_id for row in await sql(database, 'SELECT bouncer_batch_id FROM "Bouncer_Batches"')]
    assert snapshot["batch_creations"] == len(created) == len(ledger)
    assert {known for known in ledger if known is not None} <= created
    assert CREDITS - snapshot["credits"][fingerprint(API_KEY)] == unique


def dropped_creates(simulator: SimulatorServer) -> int:
    return sum(1 for r in simulator.state.requests if r["path"] == BATCH_PATH and r["status"] == 0)


async def test_dropped_create_answers_with_a_callback_url_cost_nothing(
    env_for: Any, database: str, tmp_path: Path
) -> None:
    emails = make_emails(600, "drop-cb")
    port = _free_port()
    async with running_simulator(_config(drop_create_response_rate=0.3)) as simulator:
        env = env_for(simulator, port)
        request_id = submit(env, tmp_path, emails)
        with workers(env, tmp_path, port) as processes:
            await until_finished(database, request_id, len(emails), processes)
        assert dropped_creates(simulator) >= 1  # the seed drops some: the test exercises the lost answers
        await assert_results_match_simulator(database, request_id, len(emails))
        assert await dead_letters(database) == []
        await assert_paid_once(database, simulator, len(emails))
        assert set((await _states(database)).values()) == {"downloaded"}


async def test_dropped_create_answers_without_a_callback_url_are_held_for_an_operator(
    env_for: Any, database: str, tmp_path: Path
) -> None:
    emails = make_emails(600, "drop-nocb")
    async with running_simulator(_config(drop_create_response_rate=0.3)) as simulator:
        env = env_for(simulator, None)
        request_id = submit(env, tmp_path, emails)
        with workers(env, tmp_path, None) as processes:
            await until_finished(database, request_id, len(emails), processes)
        dropped = dropped_creates(simulator)
        assert dropped >= 1
        letters = await dead_letters(database)
        assert [letter.error_class for letter in letters] == ["SubmissionOutcomeUnknown"] * dropped
        states = await _states(database)
        assert sorted(states.values()) == sorted(["dead"] * dropped + ["downloaded"] * (len(states) - dropped))
        await _assert_results_of_live_batches(database, request_id)
        await assert_paid_once(database, simulator, len(emails))

        listed = json.loads(run_cli(["dlq", "list", "--json"], env, tmp_path))
        assert {row["may_have_been_charged"] for row in listed} == {True}
        refused = subprocess.run(
            [str(CLI), "dlq", "replay", str(letters[0].id)], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert refused.returncode == 1
        assert "may have been charged" in refused.stdout + refused.stderr
        assert "--force" in refused.stdout + refused.stderr
        assert "0 dead letters replayed" in run_cli(["dlq", "replay", "--all"], env, tmp_path)
        assert simulator.state.batch_creations == len(states)  # nothing was submitted again


async def test_kill_9_during_a_create_call_completes_without_an_operator(
    env_for: Any, database: str, tmp_path: Path
) -> None:
    emails = make_emails(300, "kill9")
    port = _free_port()
    # Each create waits 3 s after creating and charging the batch before it answers: a kill lands mid-call.
    async with running_simulator(_config(create_latency_seconds=3.0, speed=100.0)) as simulator:
        env = env_for(simulator, port, batch_size=100, max_concurrent_batches=1)
        request_id = submit(env, tmp_path, emails)
        with workers(env, tmp_path, port) as processes:
            await eventually(lambda: _created(simulator), "a batch created at the simulator", timeout=120)
            [calling] = await _submitting(database)  # one slot: one create call under way
            index = next(i for i, p in enumerate(processes) if _started_create(p, calling))
            processes[index].process.kill()  # SIGKILL, while its create call waits for the answer
            processes[index].process.wait(timeout=30)
            assert await _submitting(database) == [calling]
            replacement = dict(env) | ({"CALLBACK_PORT": str(port)} if index == 0 else {})
            processes[index] = WorkerProcess(replacement, tmp_path, "workers-restarted")
            try:
                await until_finished(database, request_id, len(emails), processes)
            finally:
                processes[index].kill()
        await assert_results_match_simulator(database, request_id, len(emails))
        assert await dead_letters(database) == []
        await assert_paid_once(database, simulator, len(emails))


def _started_create(process: WorkerProcess, batch_id: int) -> bool:
    """Whether this workers process logged the start of the create call of `batch_id` (JSON log lines)."""
    for line in process.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"batch_create_started"' in line and json.loads(line).get("batch_id") == batch_id:
            return True
    return False


async def _created(simulator: SimulatorServer) -> bool:
    return len(recorded(simulator).created) >= 1


async def _submitting(database: str) -> list[int]:
    rows = await sql(database, "SELECT id FROM \"Bouncer_Batches\" WHERE status = 'submitting'")
    return [row.id for row in rows]


async def _states(database: str) -> dict[int, str]:
    return {row.id: row.status for row in await sql(database, 'SELECT id, status FROM "Bouncer_Batches"')}


async def _assert_results_of_live_batches(database: str, request_id: str) -> None:
    """Every address of a downloaded batch has exactly one result; a dead batch's addresses have none."""
    rows = await sql(
        database,
        'SELECT b.status, (SELECT COUNT(*) FROM "Bouncer_Results" r WHERE r.request_id = q.request_id '
        'AND r.email = q.email) AS n FROM "Bouncer_Queue" q JOIN "Bouncer_Batches" b ON b.id = q.batch_id '
        "WHERE q.request_id = :rid",
        rid=request_id,
    )
    assert {(row.status, row.n) for row in rows} <= {("downloaded", 1), ("dead", 0)}
