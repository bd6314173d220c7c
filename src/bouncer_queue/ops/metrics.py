"""Prometheus metrics of one process: queue depths, job outcomes, Bouncer calls, credits and rate-limit use.

`Metrics` owns its own `CollectorRegistry` (never prometheus_client's global one), so two runtimes in one
process, or two tests, never share counters. Workers call the intent-named methods; the Bouncer client's
`on_response(endpoint, status)` hook can be `Metrics.bouncer_response` itself. `serve` exposes the registry
on a port for Prometheus to scrape; `render` returns the same text for an HTTP route of our own.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import TracebackType
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

#: Bouncer calls take from tens of milliseconds to a minute (a batch download); jobs span the same range.
_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

#: The label `bouncer_response` uses for status 0: no HTTP answer at all (refused, timeout, broken response).
TRANSPORT_ERROR = "transport_error"

_TOO_MANY_REQUESTS = 429


class MetricsServer:
    """The scrape endpoint started by `Metrics.serve`; close it (or use `with`) to free the port."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self._closed = False

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        """The bound port: the real one when `serve(0)` asked the OS to pick."""
        return int(self._httpd.server_address[1])

    def close(self) -> None:
        """Stop serving and release the socket; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Metrics:
    """Every metric the service exports, registered in a registry of its own (`self.registry`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self._queue_jobs = Gauge("queue_jobs", "Jobs per queue and state.", ["queue", "state"], registry=reg)
        self._utilization = Gauge(
            "rate_limit_utilization", "Share of a Bouncer rate-limit budget in use (0-1).", ["budget"], registry=reg
        )
        self._in_flight = Gauge("batches_in_flight", "Bouncer batches submitted and not yet finished.", registry=reg)
        self._oldest = Gauge(
            "oldest_waiting_job_age_seconds",
            "How long the oldest job ready to run on a work queue has waited (0: none waits).",
            registry=reg,
        )
        self._credits = Gauge("credits_left", "Bouncer credits left on the account.", registry=reg)
        self._processed = Counter(
            "jobs_processed_total", "Jobs finished, successful or not.", ["queue", "job"], registry=reg
        )
        self._failed = Counter("jobs_failed_total", "Jobs that finished with an error.", ["queue", "job"], registry=reg)
        self._requests = Counter(
            "bouncer_requests_total",
            "Bouncer API calls by endpoint and HTTP status.",
            ["endpoint", "status"],
            registry=reg,
        )
        self._rate_limited = Counter(
            "bouncer_rate_limited_total", "Bouncer API calls answered 429.", ["endpoint"], registry=reg
        )
        self._verified = Counter(
            "emails_verified_total", "Emails verified, by result status.", ["status"], registry=reg
        )
        self._duration = Histogram(
            "job_duration_seconds", "Job run time.", ["queue", "job"], buckets=_DURATION_BUCKETS, registry=reg
        )

    def observe_job(self, queue: str, job: str, seconds: float, ok: bool) -> None:
        """Record one finished job: its duration, and a failure when `ok` is false."""
        self._duration.labels(queue=queue, job=job).observe(seconds)
        self._processed.labels(queue=queue, job=job).inc()
        if not ok:
            self._failed.labels(queue=queue, job=job).inc()

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

    def serve(self, port: int, host: str = "127.0.0.1") -> MetricsServer:
        """Serve the registry at http://host:port/ in a daemon thread; port 0 picks a free port."""
        httpd, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(httpd, thread)
