"""Exactly once under faults (project issue #8): every paid batch ends with its results stored, none is paid twice.

Real processes throughout: the simulator over HTTP, two `bouncer-queue workers` processes on the test's Redis
prefix, PostgreSQL (a database of the test's own, or a whole cluster of its own when the test stops it), and
SQLite for `verify`. Each test ends with the same three checks (`assert_exactly_once`): every unique address
has exactly one result; the batches the simulator created are exactly the ledger's; the credits charged equal
the unique addresses sent.
"""

from __future__ import annotations

import asyncio
import csv
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pipeline_support import (
    API_KEY,
    CLI,
    PostgresCluster,
    WorkerProcess,
    assert_exactly_once,
    batch_states,
    dead_letters,
    emails_finished,
    eventually,
    make_emails,
    run_cli,
    run_cli_status,
    running_simulator,
    sql,
    worker_env,
    write_csv,
)
from sqlalchemy.exc import OperationalError

from bouncer_queue.simulator import SimulatorConfig, SimulatorServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CREDITS = 1_000_000


def spellings(emails: list[str]) -> list[str]:
    """Each address, then again in capitals further down, and every third one a third time: repeats that
    straddle batches and repeats within one, in another case."""
    repeated = [e.upper() for e in emails] + [e.title() for e in emails[::3]]
    return [*emails, *repeated[::-1]]


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    # Duplicates inside a batch are charged, so a repeat that reached Bouncer would show in the credits.
    config = SimulatorConfig(api_keys=(API_KEY,), speed=500.0, queue_delay_seconds=0.1, charge_duplicates=True)
    async with running_simulator(config) as server:
        yield server


def env_for(database: str, server: SimulatorServer, redis_url: str, prefix: str, tmp: Path, **extra: object) -> dict:
    settings: dict[str, object] = {
        "batch_size": 200,
        "max_concurrent_batches": 6,
        "poll_interval_seconds": 0.3,
        "batch_download_concurrency": 4,
        "email_verification_limit": 0,
        "batch_status_limit": 0,
        "batch_download_limit": 0,
        "rate_limit_window_seconds": 6,
        "rate_limit_max": 300,
        "rate_limit_create_max": 100,
        "reconcile_interval_seconds": 2,
        "health_check_interval_seconds": 3_600,
        "job_backoff_ms": 200,
        "shutdown_grace_seconds": 10,
    }
    return worker_env(
        database_url=database,
        redis_url=redis_url,
        prefix=prefix,
        base_url=server.base_url,
        state_dir=tmp / "state",
        **(settings | extra),
    )


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Started by the test with `start(env)`; killed afterwards whatever happened."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()


def start_two(started: list[WorkerProcess], env: dict[str, str], cwd: Path) -> list[WorkerProcess]:
    started.extend(WorkerProcess(env, cwd, f"workers-{n}") for n in (1, 2))
    return started


async def wait_finished(
    database: str, request_id: str, rows: int, workers: list[WorkerProcess], timeout: float
) -> None:
    async def finished() -> bool:
        assert all(w.alive() for w in workers), [w.output() for w in workers]
        return await emails_finished(database, request_id) == rows

    await eventually(finished, f"{rows} rows verified", timeout=timeout, interval=0.5)


def exported(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.postgres
async def test_repeated_addresses_across_batches_with_concurrent_downloads(
    database: str, simulator: SimulatorServer, redis_url: str, queue_prefix: str, tmp_path: Path, two_workers: list
) -> None:
    unique = make_emails(1_500, "repeat")
    rows = spellings(unique)
    env = env_for(database, simulator, redis_url, queue_prefix, tmp_path)
    run_cli(["db", "upgrade"], env, tmp_path)
    workers = start_two(two_workers, env, tmp_path)
    listing = write_csv(tmp_path / "list.csv", rows)
    request_id = run_cli(["submit", str(listing)], env, tmp_path).strip().splitlines()[-1]
    await wait_finished(database, request_id, len(rows), workers, timeout=150)
    assert [w.terminate() for w in workers] == [0, 0], [w.output() for w in workers]

    await assert_exactly_once(database, simulator, unique, CREDITS)
    assert await dead_letters(database) == []
    assert set((await batch_states(database)).values()) == {"downloaded"}
    assert await sql(database, 'SELECT status FROM "Bouncer_Requests"') == [("finished",)]
    out = tmp_path / "results.csv"
    run_cli(["results", request_id, "--output", str(out)], env, tmp_path)
    lines = exported(out)
    assert len(lines) == len(rows)  # every input row, repeats included, has its result
    assert all(line["status"] for line in lines)


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    built = PostgresCluster()
    try:
        built.start()
        yield built
    finally:
        built.destroy()


@pytest.mark.timeout(420)
async def test_the_database_stopped_for_30_s_mid_run(
    cluster: PostgresCluster, redis_url: str, queue_prefix: str, tmp_path: Path, two_workers: list
) -> None:
    # 100 addresses a second: 20 batches of 200 take about 40 s at Bouncer, 6 at a time, so the outage hits
    # batches in every state.
    config = SimulatorConfig(api_keys=(API_KEY,), speed=100.0, queue_delay_seconds=0.1)
    async with running_simulator(config) as server:
        unique = make_emails(4_000, "outage")
        env = env_for(cluster.url, server, redis_url, queue_prefix, tmp_path)
        run_cli(["db", "upgrade"], env, tmp_path)
        workers = start_two(two_workers, env, tmp_path)
        listing = write_csv(tmp_path / "list.csv", unique)
        request_id = run_cli(["submit", str(listing)], env, tmp_path).strip().splitlines()[-1]

        async def under_way() -> bool:
            states = set((await batch_states(cluster.url)).values())
            return "downloaded" in states and bool(states & {"queued", "processing", "completed"})

        await eventually(under_way, "some batches downloaded, others at Bouncer", timeout=120)
        await asyncio.to_thread(cluster.stop)
        await asyncio.sleep(30)  # the outage itself, not a measurement
        assert all(w.alive() for w in workers), [w.output() for w in workers]
        await asyncio.to_thread(cluster.start)
        await wait_finished(cluster.url, request_id, len(unique), workers, timeout=240)
        assert [w.terminate() for w in workers] == [0, 0], [w.output() for w in workers]
        logs = [w.log_path.read_text(encoding="utf-8", errors="replace") for w in workers]
        assert any("waiting for the database" in log for log in logs)  # the outage did reach the stages

        await assert_exactly_once(cluster.url, server, unique, CREDITS)
    assert await dead_letters(cluster.url) == []
    assert set((await batch_states(cluster.url)).values()) == {"downloaded"}


@pytest.mark.timeout(300)
async def test_ctrl_c_then_verify_again(redis_url: str, queue_prefix: str, tmp_path: Path) -> None:
    config = SimulatorConfig(api_keys=(API_KEY,), speed=150.0, queue_delay_seconds=0.1)
    async with running_simulator(config) as server:
        unique = make_emails(2_000, "again")
        database = f"sqlite:///{tmp_path / 'ledger.db'}"
        env = env_for(database, server, redis_url, queue_prefix, tmp_path, max_concurrent_batches=3)
        listing = write_csv(tmp_path / "list.csv", unique)
        out = tmp_path / "list.verified.csv"
        command = [str(CLI), "verify", str(listing), "--output", str(out)]
        with (tmp_path / "first.log").open("wb") as log:
            first = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        try:

            async def under_way() -> bool:
                if not (tmp_path / "ledger.db").exists():  # not created by verify yet (reading would create it)
                    return False
                try:
                    states = set((await batch_states(database)).values())
                except OperationalError:  # created, not migrated yet
                    return False
                return "downloaded" in states and "pending" in states

            await eventually(under_way, "some batches downloaded, some still pending", timeout=90)
            first.send_signal(signal.SIGINT)
            assert await asyncio.to_thread(first.wait, 60) == 130
        finally:
            first.kill()  # a no-op once it exited
            first.wait()
        assert not out.exists()
        assert (
            await emails_finished(database, (await sql(database, 'SELECT request_id FROM "Bouncer_Requests"'))[0][0])
            < 2_000
        )

        code, output = await asyncio.to_thread(run_cli_status, command[1:], env, tmp_path, 150)
        assert code == 0, output
        # verify sends while it stores the list: Ctrl-C may come before its last chunk was stored (the next run
        # stores the rest) or after (it resumes the stored request); on a busy machine, either.
        assert "resuming it" in output or "storing the rest of it" in output

        await assert_exactly_once(database, server, unique, CREDITS)
    assert len(await sql(database, 'SELECT request_id FROM "Bouncer_Requests"')) == 1
    assert len(exported(out)) == 2_000
    assert await dead_letters(database) == []


def refusals(server: SimulatorServer) -> int:
    return sum(1 for r in server.state.requests if r["method"] == "POST" and r["status"] == 401)


@pytest.mark.postgres
@pytest.mark.timeout(300)
async def test_a_wrong_key_then_rotation(
    database: str, simulator: SimulatorServer, redis_url: str, queue_prefix: str, tmp_path: Path, two_workers: list
) -> None:
    unique = make_emails(1_000, "rotate")
    env = env_for(database, simulator, redis_url, queue_prefix, tmp_path)
    run_cli(["db", "upgrade"], env, tmp_path)
    # One process reads its key from a file, the other from .env (re-read on SIGHUP); both keys are wrong.
    key_file = tmp_path / "key"
    key_file.write_text("wrong-key-one\n", encoding="utf-8")
    dotenv_dir = tmp_path / "second"
    dotenv_dir.mkdir()
    (dotenv_dir / ".env").write_text("BOUNCER_API_KEY=wrong-key-two\n", encoding="utf-8")
    first_env = {k: v for k, v in env.items() if k != "BOUNCER_API_KEY"} | {"BOUNCER_API_KEY_FILE": str(key_file)}
    second_env = {k: v for k, v in env.items() if k != "BOUNCER_API_KEY"}
    two_workers.extend([WorkerProcess(first_env, tmp_path, "workers-1"), WorkerProcess(second_env, dotenv_dir, "w2")])
    listing = write_csv(tmp_path / "list.csv", unique)
    request_id = run_cli(["submit", str(listing)], env, tmp_path).strip().splitlines()[-1]

    async def refused_by_both() -> bool:
        logs = [w.log_path.read_text(encoding="utf-8", errors="replace") for w in two_workers]
        return all("api_key_refused" in log for log in logs)

    await eventually(refused_by_both, "both workers met the refused key", timeout=90)
    code, report = await asyncio.to_thread(run_cli_status, ["health"], first_env, tmp_path)
    assert code == 1 and "refused the API key" in report, report
    assert await dead_letters(database) == []
    assert set((await batch_states(database)).values()) == {"pending"}
    assert simulator.state.batch_creations == 0

    key_file.write_text(f"{API_KEY}\n", encoding="utf-8")
    (dotenv_dir / ".env").write_text(f"BOUNCER_API_KEY={API_KEY}\n", encoding="utf-8")
    two_workers[1].process.send_signal(signal.SIGHUP)
    await wait_finished(database, request_id, len(unique), two_workers, timeout=180)
    assert [w.terminate() for w in two_workers] == [0, 0], [w.output() for w in two_workers]

    await assert_exactly_once(database, simulator, unique, CREDITS)
    assert await dead_letters(database) == []
    assert refusals(simulator) >= 2


async def test_verify_with_a_refused_key_exits_1_writes_no_results_and_resumes_with_a_good_one(
    simulator: SimulatorServer, redis_url: str, queue_prefix: str, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'ledger.db'}"
    env = env_for(database, simulator, redis_url, queue_prefix, tmp_path)
    unique = make_emails(100, "refused")
    listing = write_csv(tmp_path / "list.csv", unique)
    out = tmp_path / "list.verified.csv"
    command = ["verify", str(listing), "--output", str(out)]
    code, output = await asyncio.to_thread(run_cli_status, command, env | {"BOUNCER_API_KEY": "not-the-key"}, tmp_path)

    assert code == 1, output
    assert "refused the API key" in output
    assert not out.exists()
    assert await dead_letters(database) == []
    assert set((await batch_states(database)).values()) == {"pending"}
    assert simulator.state.batch_creations == 0

    code, output = await asyncio.to_thread(run_cli_status, command, env, tmp_path)
    assert code == 0, output
    assert "resuming it" in output
    assert len(exported(out)) == 100
    await assert_exactly_once(database, simulator, unique, CREDITS)
