"""Metrics: each intent-named method shows up in the exposition text, read back with Prometheus's own parser."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from bouncer_queue.ops.metrics import TRANSPORT_ERROR, Metrics


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the rendered text, keyed by (sample name, labels)."""
    text = metrics.render().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, frozenset(labels.items()))]


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def test_job_outcomes_count_runs_failures_and_deferrals_apart(metrics: Metrics):
    metrics.observe_job("email-verification", "submit", 0.2, "completed")
    metrics.observe_job("email-verification", "submit", 3.0, "failed")
    metrics.observe_job("email-verification", "submit", 0.1, "deferred")
    metrics.observe_job("batch-download", "download", 1.0, "completed")
    metrics.dead_lettered("email-verification", "submit")

    job = {"queue": "email-verification", "job_name": "submit"}
    assert value(metrics, "bouncer_queue_jobs_processed_total", **job) == 2
    assert value(metrics, "bouncer_queue_jobs_failed_total", **job) == 1
    assert value(metrics, "bouncer_queue_jobs_deferred_total", **job) == 1
    assert value(metrics, "bouncer_queue_dead_letters_total", **job) == 1
    assert value(metrics, "bouncer_queue_jobs_processed_total", queue="batch-download", job_name="download") == 1
    failed_download = (
        "bouncer_queue_jobs_failed_total",
        frozenset({"queue": "batch-download", "job_name": "download"}.items()),
    )
    assert failed_download not in samples(metrics)


def test_job_duration_histogram(metrics: Metrics):
    metrics.observe_job("q", "j", 0.2, "completed")
    metrics.observe_job("q", "j", 3.0, "completed")

    assert value(metrics, "bouncer_queue_job_duration_seconds_count", queue="q", job_name="j") == 2
    assert value(metrics, "bouncer_queue_job_duration_seconds_sum", queue="q", job_name="j") == pytest.approx(3.2)
    assert value(metrics, "bouncer_queue_job_duration_seconds_bucket", queue="q", job_name="j", le="0.25") == 1
    assert value(metrics, "bouncer_queue_job_duration_seconds_bucket", queue="q", job_name="j", le="5.0") == 2


def test_every_series_is_prefixed_no_label_is_job_and_process_and_build_info_are_there(metrics: Metrics):
    metrics.observe_job("q", "j", 0.2, "completed")
    metrics.set_credits_left(1)
    names = {name for name, _ in samples(metrics)}
    labels = {label for _, pairs in samples(metrics) for label, _ in pairs}

    assert all(name.startswith("bouncer_queue_") for name in names), names
    assert "job" not in labels
    assert "bouncer_queue_process_resident_memory_bytes" in names
    assert (
        value(
            metrics,
            "bouncer_queue_build_info",
            version="0.1.0",
            bullmq="3.4.4",
            python=__import__("platform").python_version(),
        )
        == 1
    )


def test_bouncer_responses_by_status_with_429_and_transport_failures(metrics: Metrics):
    for status in (200, 200, 429, 0):
        metrics.bouncer_response("create_batch", status)

    assert value(metrics, "bouncer_queue_bouncer_requests_total", endpoint="create_batch", status="200") == 2
    assert value(metrics, "bouncer_queue_bouncer_requests_total", endpoint="create_batch", status="429") == 1
    assert value(metrics, "bouncer_queue_bouncer_requests_total", endpoint="create_batch", status=TRANSPORT_ERROR) == 1
    assert value(metrics, "bouncer_queue_bouncer_rate_limited_total", endpoint="create_batch") == 1


def test_queue_counts_set_per_queue_and_state(metrics: Metrics):
    metrics.set_queue_counts({"email-verification": {"waiting": 12, "active": 3}, "cleanup-tasks": {"failed": 1}})
    metrics.set_queue_counts({"email-verification": {"waiting": 4}})

    assert value(metrics, "bouncer_queue_queue_jobs", queue="email-verification", state="waiting") == 4
    assert value(metrics, "bouncer_queue_queue_jobs", queue="email-verification", state="active") == 3
    assert value(metrics, "bouncer_queue_queue_jobs", queue="cleanup-tasks", state="failed") == 1


def test_gauges(metrics: Metrics):
    metrics.set_rate_limit_utilization("create", 0.75)
    metrics.set_batches_in_flight(7)
    metrics.set_credits_left(12_345)
    metrics.set_batches_in_flight(6)
    metrics.set_oldest_waiting_age(42.5)

    assert value(metrics, "bouncer_queue_rate_limit_utilization", budget="create") == 0.75
    assert value(metrics, "bouncer_queue_batches_in_flight") == 6
    assert value(metrics, "bouncer_queue_credits_left") == 12_345
    assert value(metrics, "bouncer_queue_oldest_waiting_job_age_seconds") == 42.5


def test_emails_verified_adds_up_by_status(metrics: Metrics):
    metrics.emails_verified("deliverable", 900)
    metrics.emails_verified("deliverable", 50)
    metrics.emails_verified("risky")

    assert value(metrics, "bouncer_queue_emails_verified_total", status="deliverable") == 950
    assert value(metrics, "bouncer_queue_emails_verified_total", status="risky") == 1


def test_each_instance_has_its_own_registry_and_leaves_the_global_one_alone():
    first, second = Metrics(), Metrics()

    first.set_credits_left(1)
    second.set_credits_left(2)

    assert (value(first, "bouncer_queue_credits_left"), value(second, "bouncer_queue_credits_left")) == (1, 2)
    assert REGISTRY.get_sample_value("bouncer_queue_credits_left") is None
