"""Health rules: turn a snapshot of the system into a status and a list of alerts. No I/O.

A collector elsewhere (the health-check job, `status` command, `/api/health`) gathers a `HealthSnapshot` from
Redis, the database, the Bouncer client and the queues; `evaluate` applies the seed's rules:

- Redis or the database down, or Bouncer refusing the API key (the auth gate is closed): **unhealthy** (no job
  can run or be recorded, or none can be sent until someone rotates the key).
- Work waiting on the pipeline queues and no workers process alive (no heartbeat): **unhealthy** (nothing moves).
- Bouncer unreachable, credits exhausted, or any alert: **degraded** (jobs wait, nothing is lost).
- Alerts fire strictly above their threshold: backlog > 1000, failed jobs > 50, rate-limit utilization > 90 %,
  process memory over the limit, Redis memory over 90 % of its maxmemory.

Memory values are in MiB.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from bouncer_queue.config import Settings

Status = Literal["healthy", "degraded", "unhealthy"]

_PROC_STATUS = Path("/proc/self/status")


@dataclass(frozen=True)
class HealthSnapshot:
    """What the system looked like at one moment. None means "not measured" and raises no alert."""

    redis_ok: bool
    database_ok: bool
    bouncer_ok: bool
    redis_latency_ms: float | None = None
    database_latency_ms: float | None = None
    credits_left: int | None = None
    credits_exhausted: bool = False
    #: Why Bouncer refused the API key (401/403), while the auth gate is closed; None when it is not.
    api_key_refused: str | None = None
    #: Credits held for requests not yet submitted and spent, in all and per active request (credits/).
    credits: Mapping[str, Any] = field(default_factory=dict)
    #: Share of each shared Bouncer budget in use, 0-1, by budget name.
    rate_limit_utilization: Mapping[str, float] = field(default_factory=dict)
    process_rss_mb: float | None = None
    redis_used_memory_mb: float | None = None
    #: None or 0: Redis has no memory limit.
    redis_maxmemory_mb: float | None = None
    uptime_seconds: float = 0.0
    batches_in_flight: int = 0
    max_batches: int = 0
    #: Waiting, paused and delayed jobs over the work queues.
    backlog: int = 0
    failed_jobs: int = 0
    oldest_waiting_age_seconds: float | None = None
    #: Live workers processes (unexpired heartbeats); None: not counted.
    workers_alive: int | None = None
    #: The live workers processes: host, pid, queues, version, started_at, last_beat.
    workers: tuple[Mapping[str, Any], ...] = ()
    #: Jobs waiting (not held by a pause), delayed or active on the pipeline queues (cleanup-tasks' own
    #: schedules are not work).
    pipeline_jobs: int = 0
    #: Where credits_left comes from: "live" (asked Bouncer now) or "recorded" (the last scheduled check).
    credits_source: str | None = None
    #: When the recorded credits figure was taken (ISO 8601); None for a live one.
    credits_recorded_at: str | None = None
    #: Why a check failed, by component ("redis", "database", "bouncer"); already free of secrets.
    errors: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Thresholds:
    """Alert limits; an alert fires when a value is strictly above its limit."""

    backlog: int = 1_000
    failed_jobs: int = 50
    rate_limit_utilization: float = 0.9
    memory_mb: float = 1_024.0
    redis_memory_fraction: float = 0.9

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            backlog=settings.alert_backlog,
            failed_jobs=settings.alert_failed_jobs,
            rate_limit_utilization=settings.alert_rate_limit_utilization,
            memory_mb=settings.alert_memory_mb,
        )


@dataclass(frozen=True)
class Alert:
    """One value over its threshold."""

    name: str
    value: float
    threshold: float
    message: str


@dataclass(frozen=True)
class HealthReport:
    """The verdict: a status, the alerts behind it, and the problems (failed checks) behind it."""

    status: Status
    alerts: list[Alert]
    problems: list[str]
    snapshot: HealthSnapshot

    @property
    def ok(self) -> bool:
        return self.status == "healthy"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for `/api/health`, the `status` command and the health-metrics table.

        `snapshot` holds every snapshot field under its own name, so a stored row reads like the dataclass.
        """
        snapshot = asdict(self.snapshot)
        snapshot["rate_limit_utilization"] = dict(self.snapshot.rate_limit_utilization)
        snapshot["errors"] = dict(self.snapshot.errors)
        snapshot["workers"] = [dict(w) for w in self.snapshot.workers]
        return {
            "status": self.status,
            "problems": list(self.problems),
            "alerts": [asdict(a) for a in self.alerts],
            "snapshot": snapshot,
        }


def evaluate(snapshot: HealthSnapshot, thresholds: Thresholds) -> HealthReport:
    """Apply the health rules (see the module docstring) to one snapshot."""
    alerts = _alerts(snapshot, thresholds)
    fatal = _fatal_problems(snapshot)
    soft = _soft_problems(snapshot)
    status: Status = "unhealthy" if fatal else ("degraded" if soft or alerts else "healthy")
    return HealthReport(status=status, alerts=alerts, problems=fatal + soft, snapshot=snapshot)


def _fatal_problems(s: HealthSnapshot) -> list[str]:
    found = []
    if not s.redis_ok:
        found.append(_problem("redis", "Redis is unreachable", s.errors))
    if not s.database_ok:
        found.append(_problem("database", "the database is unreachable", s.errors))
    if s.api_key_refused is not None:
        found.append(f"Bouncer refused the API key ({s.api_key_refused}); submissions wait for a new key")
    if s.workers_alive == 0 and s.pipeline_jobs > 0:
        found.append(f"no workers process is alive while {s.pipeline_jobs} jobs wait; start `bouncer-queue workers`")
    return found


def _soft_problems(s: HealthSnapshot) -> list[str]:
    found = []
    if not s.bouncer_ok:
        found.append(_problem("bouncer", "the Bouncer API is unreachable", s.errors))
    if s.credits_exhausted:
        found.append("Bouncer credits are exhausted")
    return found


def _problem(component: str, text: str, errors: Mapping[str, str]) -> str:
    detail = errors.get(component)
    return f"{text}: {detail}" if detail else text


def _alerts(s: HealthSnapshot, t: Thresholds) -> list[Alert]:
    candidates = [
        _over("backlog", s.backlog, t.backlog, "queue backlog (waiting, paused and delayed jobs)"),
        _over("failed_jobs", s.failed_jobs, t.failed_jobs, "failed jobs"),
        _over("memory", s.process_rss_mb, t.memory_mb, "process memory (MiB)"),
        _redis_memory(s, t),
    ]
    candidates += [
        _over(f"rate_limit_utilization.{budget}", value, t.rate_limit_utilization, f"rate-limit use of '{budget}'")
        for budget, value in sorted(s.rate_limit_utilization.items())
    ]
    return [a for a in candidates if a is not None]


def _over(name: str, value: float | None, threshold: float, label: str) -> Alert | None:
    if value is None or value <= threshold:
        return None
    return Alert(name, value, threshold, f"{label} is {value:g}, above the threshold of {threshold:g}")


def _redis_memory(s: HealthSnapshot, t: Thresholds) -> Alert | None:
    if s.redis_used_memory_mb is None or not s.redis_maxmemory_mb:
        return None
    share = s.redis_used_memory_mb / s.redis_maxmemory_mb
    return _over("redis_memory", share, t.redis_memory_fraction, "Redis memory use (share of maxmemory)")


def process_rss_mb(status_file: Path = _PROC_STATUS) -> float | None:
    """This process's current resident memory in MiB (VmRSS), or None where /proc is missing.

    `resource.getrusage` is not a fallback: it reports the peak, and an alert on a past spike would never clear.
    """
    try:
        for line in status_file.read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def log_alerts(report: HealthReport, logger: logging.Logger) -> None:
    """Log one WARNING per alert, with `action=alert` and the alert's fields for log-based alerting."""
    for alert in report.alerts:
        logger.warning(
            "health alert: %s",
            alert.message,
            extra={
                "action": "alert",
                "alert": alert.name,
                "value": alert.value,
                "threshold": alert.threshold,
                "health_status": report.status,
            },
        )
