"""`bouncer-queue simulator` passes the batch-sync, domain, toxicity, latency and Retry-After knobs down."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bouncer_queue.interfaces.cli import app
from bouncer_queue.simulator import SimulatorConfig


def _run(monkeypatch: pytest.MonkeyPatch, *args: str) -> SimulatorConfig:
    calls: list[SimulatorConfig] = []
    monkeypatch.setattr("bouncer_queue.simulator.server.run", lambda host, port, config: calls.append(config))
    result = CliRunner().invoke(app, ["simulator", *args])
    assert result.exit_code == 0, result.output
    [config] = calls
    return config


def test_defaults_match_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    config, default = _run(monkeypatch), SimulatorConfig()
    knobs = ("sync_limit", "domain_limit", "toxicity_limit", "latency_scale", "retry_after_header", "batch_fail_rate")
    for knob in knobs:
        assert getattr(config, knob) == getattr(default, knob)


def test_options_and_env_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOUNCER_SIMULATOR_TOXICITY_LIMIT", "4")
    monkeypatch.setenv("BOUNCER_SIMULATOR_RETRY_AFTER_HEADER", "true")
    monkeypatch.setenv("BOUNCER_SIMULATOR_BATCH_FAIL_RATE", "0.25")
    config = _run(monkeypatch, "--sync-limit", "7", "--domain-limit", "9", "--latency-scale", "0")
    assert (config.sync_limit, config.domain_limit, config.toxicity_limit) == (7, 9, 4)
    assert config.latency_scale == 0 and config.retry_after_header is True
    assert config.batch_fail_rate == 0.25


def test_negative_latency_scale_is_rejected() -> None:
    assert CliRunner().invoke(app, ["simulator", "--latency-scale", "-1"]).exit_code != 0


def test_batch_fail_rate_above_one_is_rejected() -> None:
    assert CliRunner().invoke(app, ["simulator", "--batch-fail-rate", "2"]).exit_code != 0
