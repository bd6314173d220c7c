"""Prometheus metrics of one process: queue depths, job outcomes, Bouncer calls, credits, rate-limit use, and the
process itself.

Every series is named `bouncer_queue_*` (deploy/prometheus and deploy/grafana query them by these names), and job
series carry `job_name`, never `job`, which Prometheus sets to the scrape target. A job ends one of three ways:
`completed`, `failed` (it raised; bullmq retries it, or it is dead-lettered) or `deferred` (a stage asked to
wait: a busy batch slot, a rate limit; no attempt spent). Each has its own counter, so `jobs_failed_total` alerts
on real failures only. `Metrics` owns its own `CollectorRegistry` (never prometheus_client's global one), so two
runtimes in one process, or two tests, never share counters; it also carries the process collector (CPU, memory,
file descriptors) and `bouncer_queue_build_info`. The workers' listener (ops/probes.py) serves `render()`.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector, generate_latest

#: The prefix of every series.
NAMESPACE = "bouncer_queue"

#: Bouncer calls take from tens of milliseconds to a minute (a batch download); jobs span the same range.
_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

#: The label `bouncer_response` uses for status 0: no HTTP answer at all (refused, timeout, broken response).
TRANSPORT_ERROR = "transport_error"

_TOO_MANY_REQUESTS = 429

JobOutcome = Literal["completed", "failed", "deferred"]
_JOB_LABELS = ("queue", "job_name")


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


class Metrics:
    """Every metric the service exports, registered in a registry of its own (`self.registry`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._gauges(self.registry)
        self._jobs(self.registry)
        self._bouncer(self.registry)
        ProcessCollector(namespace=NAMESPACE, registry=self.registry)
        build = Info("build", "Versions of this process's software.", namespace=NAMESPACE, registry=self.registry)
        build.info(
            {
                "version": _package_version("bouncer-queue"),
                "bullmq": _package_version("bullmq"),
                "python": platform.python_version(),
            }
        )

    def _gauges(self, reg: CollectorRegistry) -> None:
        ns = NAMESPACE
        self._queue_jobs = Gauge(
            "queue_jobs", "Jobs per queue and state.", ["queue", "state"], namespace=ns, registry=reg
        )
        self._utilization = Gauge(
            "rate_limit_utilization",
            "Share of a Bouncer rate-limit budget in use (0-1).",
            ["budget"],
            namespace=ns,
            registry=reg,
        )
        self._in_flight = Gauge(
            "batches_in_flight", "Bouncer batches submitted and not yet finished.", namespace=ns, registry=reg
        )
        self._oldest = Gauge(
            "oldest_waiting_job_age_seconds",
            "How long the oldest job ready to run on a work queue has waited (0: none waits).",
            namespace=ns,
            registry=reg,
        )
        self._credits = Gauge("credits_left", "Bouncer credits left on the account.", namespace=ns, registry=reg)

    def _jobs(self, reg: CollectorRegistry) -> None:
        ns = NAMESPACE
        self._processed = Counter(
            "jobs_processed_total", "Job runs that completed or failed.", _JOB_LABELS, namespace=ns, registry=reg
        )
        self._failed = Counter(
            "jobs_failed_total",
            "Job runs that raised an error (retried or dead-lettered).",
            _JOB_LABELS,
            namespace=ns,
            registry=reg,
        )
        self._deferred = Counter(
            "jobs_deferred_total",
            "Job runs that asked to wait (batch slot, rate limit, credits); no attempt spent.",
            _JOB_LABELS,
            namespace=ns,
            registry=reg,
        )
        self._dead_letters = Counter(
            "dead_letters_total",
            "Jobs given up on and copied to the dead-letter queue.",
            _JOB_LABELS,
            namespace=ns,
            registry=reg,
        )
        self._duration = Histogram(
            "job_duration_seconds", "Job run time.", _JOB_LABELS, buckets=_DURATION_BUCKETS, namespace=ns, registry=reg
        )

    def _bouncer(self, reg: CollectorRegistry) -> None:
        ns = NAMESPACE
        self._requests = Counter(
            "bouncer_requests_total",
            "Bouncer API calls by endpoint and HTTP status.",
            ["endpoint", "status"],
            namespace=ns,
            registry=reg,
        )
        self._rate_limited = Counter(
            "bouncer_rate_limited_total", "Bouncer API calls answered 429.", ["endpoint"], namespace=ns, registry=reg
        )
        self._verified = Counter(
            "emails_verified_total", "Emails verified, by result status.", ["status"], namespace=ns, registry=reg
        )

    def observe_job(self, queue: str, job_name: str, seconds: float, outcome: JobOutcome) -> None:
        """Record one job run: its duration, and its outcome's counter."""
        labels = {"queue": queue, "job_name": job_name}
        self._duration.labels(**labels).observe(seconds)
        if outcome == "deferred":
            self._deferred.labels(**labels).inc()
            return
        self._processed.labels(**labels).inc()
        if outcome == "failed":
            self._failed.labels(**labels).inc()

    def dead_lettered(self, queue: str, job_name: str) -> None:
        """Count one job copied to the dead-letter queue."""
        self._dead_letters.labels(queue=queue, job_name=job_name).inc()

    def bouncer_response(self, endpoint: str, status: int) -> None:
        """Count one Bouncer call; `status` 0 means no HTTP answer. Fits the client's `on_response` hook."""
        label = TRANSPORT_ERROR if status == 0 else str(status)
        self._requests.labels(endpoint=endpoint, status=label).inc()
        if status == _TOO_MANY_REQUESTS:
            self._rate_limited.labels(endpoint=endpoint).inc()

    def set_queue_counts(self, counts: Mapping[str, Mapping[str, int]]) -> None:
        """Set job counts from `{queue: {state: count}}`; states not given keep their last value."""
        for queue, states in counts.items():
            for state, count in states.items():
                self._queue_jobs.labels(queue=queue, state=state).set(count)

    def set_rate_limit_utilization(self, budget: str, value: float) -> None:
        self._utilization.labels(budget=budget).set(value)

    def set_batches_in_flight(self, n: int) -> None:
        self._in_flight.set(n)

    def set_oldest_waiting_age(self, seconds: float | None) -> None:
        """How long the oldest ready job has waited; 0 when none waits."""
        self._oldest.set(seconds or 0.0)

    def set_credits_left(self, n: int | float) -> None:
        self._credits.set(n)

    def emails_verified(self, status: str, n: int = 1) -> None:
        """Count `n` verified emails of one result status (deliverable, risky, ...)."""
        self._verified.labels(status=status).inc(n)

    def render(self) -> bytes:
        """The registry in Prometheus text exposition format."""
        return generate_latest(self.registry)
