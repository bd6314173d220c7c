"""`bouncer-queue simulator`: the thin command passes its options down, and the real script serves Bouncer's API."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bouncer_queue.interfaces.cli import app
from bouncer_queue.simulator import SimulatorConfig


def test_command_builds_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int, SimulatorConfig]] = []
    monkeypatch.setattr("bouncer_queue.simulator.server.run", lambda h, p, c: calls.append((h, p, c)))
    monkeypatch.setenv("BOUNCER_SIMULATOR_SEED", "from-env")
    result = CliRunner().invoke(
        app,
        ["simulator", "--port", "9001", "--api-key", "k1", "--api-key", "k2", "--speed", "500", "--fail-rate", "0.1"],
    )
    assert result.exit_code == 0, result.output
    [(host, port, config)] = calls
    assert (host, port, config.api_keys, config.speed, config.fail_rate) == ("127.0.0.1", 9001, ("k1", "k2"), 500, 0.1)
    assert config.seed == "from-env"


def test_bad_fail_rate_is_rejected() -> None:
    result = CliRunner().invoke(app, ["simulator", "--fail-rate", "2"])
    assert result.exit_code != 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_simulator_subprocess_answers_credits() -> None:
    script = Path(sys.executable).with_name("bouncer-queue")
    port = _free_port()
    process = subprocess.Popen(
        [str(script), "simulator", "--port", str(port), "--credits", "77"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        answer = None
        for _ in range(300):  # up to ~30 s for a cold start on a busy machine; not a timing assertion
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/v1.1/credits", headers={"x-api-key": "k"}, timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                time.sleep(0.1)
        assert answer is not None and answer.json() == {"credits": 77}
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    # uvicorn shuts down cleanly, then re-raises the SIGTERM it caught, as a signalled exit.
    assert process.returncode in (0, -signal.SIGTERM)
    assert b"Finished server process" in err
