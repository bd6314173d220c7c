"""The workers process as operators see it: Prometheus metrics over HTTP, and API key rotation on SIGHUP."""

from __future__ import annotations

import platform
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ops_support import OpsSystem, eventually, free_port, make_system
from prometheus_client.parser import text_string_to_metric_families

from bouncer_queue.simulator import SimulatorConfig
from bouncer_queue.simulator.state import fingerprint

pytestmark = [pytest.mark.redis, pytest.mark.slow]

KEY_A = "rotation-key-a-61f0c2"
KEY_B = "rotation-key-b-0d93e7"


@pytest.fixture
def system(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str, queue_prefix: str) -> Iterator[OpsSystem]:
    # create_limit=1: Bouncer answers 429 to a second create within its window, so the 429 counter moves.
    config = SimulatorConfig(
        api_keys=(KEY_A, KEY_B), speed=5_000.0, queue_delay_seconds=0.0, create_limit=1, window_seconds=1.0
    )
    key_file = tmp_path / "bouncer.key"
    key_file.write_text(KEY_A + "\n", encoding="utf-8")
    yield from make_system(
        monkeypatch,
        tmp_path,
        redis_url,
        queue_prefix,
        config,
        BOUNCER_API_KEY_FILE=str(key_file),
        BATCH_SIZE="2",
        RATE_LIMIT_CREATE_MAX="100",
        EMAIL_VERIFICATION_LIMIT="0",
    )


def _samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(url, timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_endpoint_of_the_workers_process(system: OpsSystem) -> None:
    assert system.cli("db", "upgrade").exit_code == 0
    port = free_port()
    emails = [f"{status}@sandbox.usebouncer.com" for status in ("deliverable", "undeliverable", "unknown")]
    env = {"METRICS_PORT": str(port), "METRICS_REFRESH_SECONDS": "0.2", "HEALTH_CHECK_INTERVAL_SECONDS": "1"}
    with system.workers(**env):
        submitted = system.cli("submit", str(system.list_file("three.csv", emails)), "--wait")
        assert submitted.exit_code == 0, submitted.stderr
        url = f"http://127.0.0.1:{port}/metrics"
        # The gauges follow the queues without a health check: the refresh task sets them.
        samples = eventually(
            lambda: (
                (s := _samples(url))
                and _value(s, "bouncer_queue_queue_jobs", queue="batch-download", state="completed") == 2
                and _value(s, "bouncer_queue_credits_left") > 0  # set by the scheduled health check
                and s
            )
        )
    assert _value(samples, "bouncer_queue_queue_jobs", queue="email-verification", state="completed") == 2
    assert _value(samples, "bouncer_queue_batches_in_flight") == 0
    assert (
        _value(samples, "bouncer_queue_jobs_processed_total", queue="email-verification", job_name="create-batch") >= 2
    )
    assert (
        _value(samples, "bouncer_queue_jobs_processed_total", queue="batch-download", job_name="download-batch-results")
        == 2
    )
    assert (
        _value(
            samples,
            "bouncer_queue_job_duration_seconds_count",
            queue="batch-download",
            job_name="download-batch-results",
        )
        == 2
    )
    assert _value(samples, "bouncer_queue_bouncer_requests_total", endpoint="batch_create", status="200") == 2
    assert _value(samples, "bouncer_queue_bouncer_rate_limited_total", endpoint="batch_create") >= 1
    assert _value(samples, "bouncer_queue_bouncer_requests_total", endpoint="batch_create", status="429") >= 1
    for status in ("deliverable", "undeliverable", "unknown"):
        assert _value(samples, "bouncer_queue_emails_verified_total", status=status) == 1
    # Before or after the three addresses were charged, depending on when the last health check ran.
    assert _value(samples, "bouncer_queue_credits_left") in (1_000_000, 1_000_000 - 3)
    assert ("bouncer_queue_rate_limit_utilization", frozenset({("budget", "create")})) in samples
    # Bouncer's 429 on the second create defers that job: a deferral, not a failure.
    assert (
        _value(samples, "bouncer_queue_jobs_deferred_total", queue="email-verification", job_name="create-batch") >= 1
    )
    assert [k for k, v in samples.items() if k[0] == "bouncer_queue_jobs_failed_total" and v > 0] == []
    build = {"version": "0.1.0", "bullmq": "3.4.4", "python": platform.python_version()}
    assert _value(samples, "bouncer_queue_build_info", **build) == 1
    assert _value(samples, "bouncer_queue_process_resident_memory_bytes") > 0


def test_sighup_rotates_the_api_key_without_a_restart(system: OpsSystem) -> None:
    assert system.cli("db", "upgrade").exit_code == 0
    requests = system.simulator.state.requests
    with system.workers() as workers:
        first = system.cli("submit", str(system.list_file("a.csv", ["a1@example.com", "a2@example.com"])), "--wait")
        assert first.exit_code == 0
        seen_before = len(requests)
        assert {r["key"] for r in requests} == {fingerprint(KEY_A)}

        (system.tmp_path / "bouncer.key").write_text(KEY_B + "\n", encoding="utf-8")
        workers.process.send_signal(signal.SIGHUP)
        reloaded = eventually(lambda: [r for r in workers.json_logs() if r.get("action") == "api_key_reloaded"])
        assert reloaded[0]["message"] == "API key reloaded" and reloaded[0]["changed"] is True

        second = system.cli("submit", str(system.list_file("b.csv", ["b1@example.com", "b2@example.com"])), "--wait")
        assert second.exit_code == 0
        assert workers.process.poll() is None  # the same process did the work
        assert {r["key"] for r in requests[seen_before:]} == {fingerprint(KEY_B)}
    logs = workers.logs()
    assert KEY_A not in logs and KEY_B not in logs
