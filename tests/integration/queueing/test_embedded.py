"""The embedded Valkey: start/stop, persistence across a restart, stale servers, and bullmq on top of it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import redis

from bouncer_queue.config import QueueTuning, Settings
from bouncer_queue.errors import QueueBackendError
from bouncer_queue.pipeline.ports import JobSpec
from bouncer_queue.queueing.connection import open_redis_target, ping
from bouncer_queue.queueing.embedded import EmbeddedValkey
from bouncer_queue.queueing.enqueue import BullmqEnqueuer
from bouncer_queue.queueing.worker import JobContext, build_workers


def _client(server: EmbeddedValkey) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(server.socket_path), decode_responses=True)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_start_answers_and_stop_ends_the_process(tmp_path: Path) -> None:
    with EmbeddedValkey(tmp_path) as server:
        pid = server.pid
        assert pid is not None
        with _client(server) as client:
            assert client.ping()
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
            assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert not Path(f"/proc/{pid}").exists() or b"valkey" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    server.stop()  # idempotent


def test_data_survives_a_restart(tmp_path: Path) -> None:
    with EmbeddedValkey(tmp_path) as server, _client(server) as client:
        client.set("kept", "yes")
    with EmbeddedValkey(tmp_path) as server, _client(server) as client:
        assert client.get("kept") == "yes"


def test_a_stale_server_from_a_crash_is_stopped(tmp_path: Path) -> None:
    crashed = EmbeddedValkey(tmp_path).start()
    crashed_proc = crashed._proc
    assert crashed_proc is not None
    crashed._proc = None  # "crash": the server is left running, nobody will stop it
    crashed.ownerfile.write_text(str(_dead_pid()))
    with EmbeddedValkey(tmp_path) as server, _client(server) as client:
        assert crashed_proc.wait(timeout=15) == 0  # SIGTERM: a clean exit
        assert client.ping()


def test_a_server_in_use_by_a_live_process_is_shared_and_left_running(tmp_path: Path) -> None:
    with EmbeddedValkey(tmp_path) as first:
        first.ownerfile.write_text(str(os.getppid()))  # another live process "owns" it
        with _client(first) as client:
            client.set("written-by", "owner")
        with EmbeddedValkey(tmp_path) as second:
            assert second.attached_to == os.getppid() and second.pid is None
            with _client(second) as client:
                assert client.get("written-by") == "owner"
        assert first._proc is not None and first._proc.poll() is None  # the attached one did not stop it
        with _client(first) as client:
            assert client.ping()


def test_a_live_owner_whose_server_does_not_answer_is_a_clear_error(tmp_path: Path) -> None:
    with EmbeddedValkey(tmp_path) as first:
        first.ownerfile.write_text(str(os.getppid()))
        first.socket_path.unlink()  # the server runs, but nobody can reach it
        with pytest.raises(QueueBackendError, match="does not answer"):
            EmbeddedValkey(tmp_path).start()


def test_a_long_state_dir_gets_a_short_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with EmbeddedValkey(deep) as server, _client(server) as client:
        assert len(os.fsencode(server.socket_path)) <= 100
        assert client.ping()


async def test_bullmq_runs_on_the_embedded_valkey(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("REDIS_URL", "REDIS_HOST"):
        monkeypatch.delenv(var, raising=False)
    settings = Settings(_env_file=None, state_dir=tmp_path)
    seen: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> None:
        seen.append(dict(data))
        done.set()

    async def dead_letter(*args: Any) -> None:
        raise AssertionError(args)

    async with open_redis_target(settings) as target:
        assert "embedded" in target.display
        client = target.open_client()
        assert await ping(client) >= 0
        await client.aclose()
        enqueuer = BullmqEnqueuer(target, "{smoke}", attempts=1, backoff_ms=100, keep_completed=10, keep_failed=10)
        pool = build_workers(
            target,
            "{smoke}",
            {"cleanup-tasks": QueueTuning(1, 0, 1000)},
            process,
            drain_delay_seconds=1,
            on_final_failure=dead_letter,
        )
        await pool.start()
        await enqueuer.enqueue(JobSpec("cleanup-tasks", "health-check", {"x": 1}, delay_ms=1_500))
        try:
            await asyncio.wait_for(done.wait(), timeout=10)
        finally:
            await pool.close(grace_seconds=5)
            await enqueuer.close()
    assert seen == [{"x": 1}]
