"""A running system for the operations tests: real Redis (own prefix), a SQLite file, the simulator on a port.

`OpsSystem` sets the environment for the test (monkeypatch), runs CLI commands in-process through CliRunner,
starts `bouncer-queue workers` as a subprocess with its logs in a file, and polls with `eventually` (a bound on
waiting, never a timing assertion).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from bouncer_queue.interfaces.cli import app
from bouncer_queue.simulator import SimulatorConfig, SimulatorServer

SCRIPT = Path(sys.executable).with_name("bouncer-queue")


def eventually(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Call `check` until it returns something truthy, and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s (last value: {value!r})")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Workers:
    """A `bouncer-queue workers` subprocess; its stderr (the logs) goes to a file."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def json_logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.logs().splitlines() if line.startswith("{")]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # Killed and reaped here, so that only this test fails: left running, the process failed the next
            # test with a ResourceWarning. Its log says where the stop hung (a busy machine saw this once).
            self.process.kill()
            self.process.wait()
            log_end = self.logs()[-4000:]
            raise AssertionError(f"workers still running 60 s after SIGTERM; their log ends:\n{log_end}") from None


class OpsSystem:
    """The environment of one test's system, and ways to drive it."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, simulator: SimulatorServer, env: dict[str, str]
    ):
        self.monkeypatch = monkeypatch
        self.tmp_path = tmp_path
        self.simulator = simulator
        for key, value in env.items():
            monkeypatch.setenv(key, value)

    def set(self, **env: str) -> None:
        for key, value in env.items():
            self.monkeypatch.setenv(key, value)

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)

    def cli_json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        result = self.cli(*args, "--json", env=env)
        return json.loads(result.stdout)

    def counts(self, queue: str = "email-verification") -> dict[str, int]:
        stats: dict[str, dict[str, int]] = self.cli_json("stats")
        return stats[queue]

    def list_file(self, name: str, emails: list[str]) -> Path:
        path = self.tmp_path / name
        path.write_text("email\n" + "\n".join(emails) + "\n", encoding="utf-8")
        return path

    @contextmanager
    def workers(self, **env: str) -> Iterator[Workers]:
        log_path = self.tmp_path / f"workers-{len(list(self.tmp_path.glob('workers-*')))}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [str(SCRIPT), "workers"],
                env={**os.environ, **env},
                cwd=self.tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
            workers = Workers(process, log_path)
            try:
                eventually(lambda: "workers started" in workers.logs() or process.poll() is not None)
                assert process.poll() is None, workers.logs()
                yield workers
            finally:
                workers.stop()


def make_system(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    redis_url: str,
    queue_prefix: str,
    config: SimulatorConfig,
    **env: str,
) -> Iterator[OpsSystem]:
    """Start the simulator and point the environment at it, Redis and a SQLite file (migrate it yourself)."""
    monkeypatch.chdir(tmp_path)
    with SimulatorServer(config) as simulator:
        base = {
            "REDIS_URL": redis_url,
            "QUEUE_PREFIX": queue_prefix,
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bouncer.db'}",
            "BOUNCER_QUEUE_STATE_DIR": str(tmp_path / "state"),
            "BOUNCER_API_BASE_URL": simulator.base_url,
            "POLL_INTERVAL_SECONDS": "0.5",
            "LOG_JSON": "true",
            "COLUMNS": "200",
        }
        yield OpsSystem(monkeypatch, tmp_path, simulator, base | env)
