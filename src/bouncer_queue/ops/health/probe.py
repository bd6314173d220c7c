"""Health probing: gathers a `HealthSnapshot` from a running system, judges it (rules.py), records it.

`HealthProbe` reads Redis (latency, memory, the queues, the workers' heartbeats), the database (a round trip to
the primary; batches in flight and the recorded credits from DATABASE_READ_URL's replica when set; rate-limit use)
and Bouncer's credits. Credits are asked of Bouncer only when `live`: the
scheduled health-check job does so (and records the figure with its row); `bouncer-queue health` reads the figure
that job recorded, so a probe spends none of Bouncer's 10 credit checks a minute and answers in milliseconds.
Every failure of a probe is a finding in the snapshot, never an exception. `report_without_runtime` builds the
report when the system cannot even start (Redis or the database down).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bouncer_queue.bouncer import AuthError, Forbidden
from bouncer_queue.credits.reservations import credits_report
from bouncer_queue.domain import BatchState
from bouncer_queue.errors import QueueBackendError
from bouncer_queue.ops.health.rules import (
    HealthReport,
    HealthSnapshot,
    Thresholds,
    evaluate,
    log_alerts,
    process_rss_mb,
)
from bouncer_queue.ops.heartbeat import WorkerInfo, live_workers
from bouncer_queue.ops.redact import Redactor
from bouncer_queue.pipeline import jobs
from bouncer_queue.queueing.names import CLEANUP_TASKS, WORK_QUEUES
from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.records import HealthMetric
from bouncer_queue.storage.repository import Repository

if TYPE_CHECKING:
    from bouncer_queue.bootstrap import Runtime
    from bouncer_queue.config import Settings

log = logging.getLogger(__name__)

#: The queues whose jobs are pipeline work; cleanup-tasks always holds its next scheduled run.
PIPELINE_QUEUES = tuple(q for q in WORK_QUEUES if q != CLEANUP_TASKS)
_MB = 1024 * 1024


@dataclass
class _Findings:
    """What one probing round found so far; `errors` by component, already free of secrets."""

    errors: dict[str, str] = field(default_factory=dict)
    redis_ms: float | None = None
    redis_memory: tuple[float | None, float | None] = (None, None)
    workers: list[WorkerInfo] | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    usage: dict[str, float] = field(default_factory=dict)
    credits: int | None = None
    credits_recorded_at: str | None = None
    key_refused: str | None = None
    money: dict[str, Any] = field(default_factory=dict)


class HealthProbe:
    """Health of the system behind one runtime; `started_at` (monotonic) dates the uptime."""

    def __init__(self, runtime: Runtime, started_at: float) -> None:
        self._rt = runtime
        self._started_at = started_at
        self._redactor = Redactor(runtime.settings.secrets())

    async def report(self, *, live: bool = False, record: bool = False) -> HealthReport:
        """Probe, judge against the alert thresholds, and (with `record`) store the row and log the alerts."""
        report = evaluate(await self.snapshot(live=live), Thresholds.from_settings(self._rt.settings))
        if record:
            await self._record(report)
            log_alerts(report, log)
        return report

    async def snapshot(self, *, live: bool = False) -> HealthSnapshot:
        """One look at every component; with `live`, Bouncer is asked for the credits left."""
        found = _Findings()
        await self._probe_redis(found)
        db_ms = await self._probe_database(found)
        await (self._credits_live(found) if live else self._credits_recorded(found))
        found.usage = await self._utilization(found.errors)
        in_flight = await self._rt.read_repo.in_flight_count() if db_ms is not None else 0
        gate_closed = await self._rt.credits_gate.is_closed() if found.redis_ms is not None else False
        found.key_refused = await self._key_refused() if found.redis_ms is not None else None
        oldest = await self._rt.admin.oldest_waiting_age_seconds() if found.redis_ms is not None else None
        if db_ms is not None:
            found.money = credits_report(await self._rt.read_repo.request_credits(), found.credits)
        self.publish(found.counts, found.usage, in_flight, found.credits, oldest)
        return self._assemble(found, db_ms, in_flight, gate_closed, oldest, live)

    async def _key_refused(self) -> str | None:
        """Why Bouncer refused the workers' API key while the auth gate is closed, or None. Read as stored: this
        process's own key may differ from theirs, and `is_closed()` would reopen the gate for a different key."""
        return await self._rt.auth_gate.reason()

    def _assemble(
        self, found: _Findings, db_ms: float | None, in_flight: int, gate_closed: bool, oldest: float | None, live: bool
    ) -> HealthSnapshot:
        counts = found.counts
        used_mb, max_mb = found.redis_memory
        return HealthSnapshot(
            redis_ok=found.redis_ms is not None,
            redis_latency_ms=found.redis_ms,
            database_ok=db_ms is not None,
            database_latency_ms=db_ms,
            bouncer_ok="bouncer" not in found.errors,
            credits_left=found.credits,
            credits_source=("live" if live else "recorded") if found.credits is not None else None,
            credits_recorded_at=found.credits_recorded_at,
            rate_limit_utilization=found.usage,
            process_rss_mb=process_rss_mb(),
            redis_used_memory_mb=used_mb,
            redis_maxmemory_mb=max_mb,
            uptime_seconds=time.monotonic() - self._started_at,
            batches_in_flight=in_flight,
            max_batches=self._rt.settings.max_concurrent_batches,
            backlog=_total(counts, WORK_QUEUES, ("waiting", "paused", "delayed")),
            failed_jobs=_total(counts, WORK_QUEUES, ("failed",)),
            # A paused queue's jobs wait for the operator, not for a worker.
            pipeline_jobs=_total(counts, PIPELINE_QUEUES, ("waiting", "delayed", "active")),
            oldest_waiting_age_seconds=oldest,
            workers_alive=None if found.workers is None else len(found.workers),
            workers=tuple(w.to_dict() for w in found.workers or ()),
            credits_exhausted=gate_closed,
            api_key_refused=found.key_refused,
            credits=found.money,
            errors=found.errors,
        )

    async def refresh_metrics(self) -> None:
        """Set the queue, rate-limit, batch and oldest-job gauges from Redis and the database; no Bouncer call."""
        errors: dict[str, str] = {}
        counts = await self._counts(errors)
        usage = await self._utilization(errors)
        in_flight = await self._rt.read_repo.in_flight_count()
        oldest = await self._rt.admin.oldest_waiting_age_seconds()
        self.publish(counts, usage, in_flight, None, oldest)

    def publish(
        self,
        counts: dict[str, dict[str, int]],
        usage: dict[str, float],
        in_flight: int,
        credits: int | None,
        oldest: float | None,
    ) -> None:
        """Hand what was measured to the process's metrics."""
        metrics = self._rt.metrics
        metrics.set_queue_counts(counts)
        for budget, value in usage.items():
            metrics.set_rate_limit_utilization(budget, value)
        metrics.set_batches_in_flight(in_flight)
        metrics.set_oldest_waiting_age(oldest)
        if credits is not None:
            metrics.set_credits_left(credits)

    async def _probe_redis(self, found: _Findings) -> None:
        """Latency and memory from one INFO, the live workers, and the queue counts."""
        client = self._rt.redis.open_client()
        try:
            started = time.perf_counter()
            info: dict[str, Any] = await client.info("memory")
            found.redis_ms = (time.perf_counter() - started) * 1000
            found.redis_memory = _memory(info)
            found.workers = await live_workers(client, self._rt.settings.queue_prefix)
        except Exception as exc:  # any failure is a finding of the probe, not an error of the health call
            found.errors["redis"] = f"{type(exc).__name__}: {self._scrub(str(exc))}"
            return
        finally:
            await client.aclose()
        found.counts = await self._counts(found.errors)

    async def _probe_database(self, found: _Findings) -> float | None:
        try:
            return await self._rt.repo.ping() * 1000
        except Exception as exc:
            found.errors["database"] = self._scrub(str(exc))
            return None

    async def _credits_recorded(self, found: _Findings) -> None:
        """The credits figure the last scheduled check recorded; no Bouncer call."""
        try:
            latest = await self._rt.read_repo.latest_credits()
        except Exception:  # the database probe already reports an unreachable database
            return
        if latest is not None:
            found.credits, recorded_at = latest
            found.credits_recorded_at = recorded_at.isoformat()

    async def _credits_live(self, found: _Findings) -> None:
        """Credits left at Bouncer; a refused key closes the auth gate, an accepted one opens it, and the credits
        gate reopens when credits are back."""
        rt = self._rt
        try:
            decision = await rt.limiter.acquire(["credits"], "credits")
            if not decision.allowed:
                return  # Bouncer allows 10 credit checks a minute; skipping one is not a failure
            found.credits = await rt.bouncer.credits()
        except (AuthError, Forbidden) as exc:
            await rt.auth_gate.close(str(exc))
            found.errors["bouncer"] = self._scrub(str(exc))
            return
        except Exception as exc:
            found.errors["bouncer"] = self._scrub(str(exc))
            return
        await rt.auth_gate.open()  # the key in force was just accepted
        if await rt.credits_gate.is_closed() and found.credits >= await self._credits_needed():
            await rt.credits_gate.open()
            # The create jobs held by the gate are parked (queueing/waiters.py): every slot may be free, so wake
            # one per slot; never a job the user delayed.
            for _ in range(rt.settings.max_concurrent_batches):
                if not await rt.enqueuer.wake_slot_waiter(jobs.EMAIL_VERIFICATION):
                    break
            log.warning("Bouncer credits are back; submissions resume", extra={"action": "credits_restored"})

    async def _credits_needed(self) -> int:
        """What the smallest waiting batch costs: reopening the gate for less would only earn another 402."""
        pending = await self._rt.repo.batches_in_states([BatchState.PENDING])
        return min((b.billable or b.quantity for b in pending), default=1)

    async def _counts(self, errors: dict[str, str]) -> dict[str, dict[str, int]]:
        try:
            return await self._rt.admin.counts()
        except Exception as exc:
            errors.setdefault("redis", self._scrub(str(exc)))
            return {}

    async def _utilization(self, errors: dict[str, str]) -> dict[str, float]:
        try:
            usage = await self._rt.limiter.usage()
        except Exception as exc:
            errors.setdefault("database", self._scrub(str(exc)))
            return {}
        return {name: used / limit if limit else 0.0 for name, (used, limit) in usage.items()}

    async def _record(self, report: HealthReport) -> None:
        snap = report.snapshot
        numbers = {
            "backlog": snap.backlog,
            "failed_jobs": snap.failed_jobs,
            "rate_limit_utilization": max(snap.rate_limit_utilization.values(), default=None),
            "memory_mb": snap.process_rss_mb,
            "redis_latency_ms": snap.redis_latency_ms,
            "batches_in_flight": snap.batches_in_flight,
            "credits_left": snap.credits_left if snap.credits_source == "live" else None,
        }
        alerts = tuple(alert.name for alert in report.alerts)
        metric = HealthMetric(status=report.status, snapshot=report.to_dict(), alerts=alerts)
        await self._rt.repo.record_health_metric(metric, numbers)

    def _scrub(self, text: str) -> str:
        return self._redactor.redact(text)


def _total(counts: dict[str, dict[str, int]], queues: tuple[str, ...], states: tuple[str, ...]) -> int:
    return sum(counts.get(q, {}).get(s, 0) for q in queues for s in states)


def _memory(info: dict[str, Any]) -> tuple[float | None, float | None]:
    maxmemory = float(info.get("maxmemory", 0) or 0)
    return float(info.get("used_memory", 0)) / _MB, (maxmemory / _MB) or None


async def report_without_runtime(settings: Settings, error: Exception) -> HealthReport:
    """Why the system would not start, as a report: Redis refused (QueueBackendError), or the database."""
    redactor = Redactor(settings.secrets())
    errors: dict[str, str] = {}
    redis_ok = not isinstance(error, QueueBackendError)
    if not redis_ok:
        errors["redis"] = redactor.redact(str(error))
    database_ok = await _database_reachable(settings, errors, redactor)
    if redis_ok and database_ok:
        # Both answer, yet the runtime would not open: the schema is behind, for example.
        database_ok = False
        errors["database"] = redactor.redact(f"{type(error).__name__}: {error}")
    snapshot = HealthSnapshot(
        redis_ok=redis_ok,
        database_ok=database_ok,
        bouncer_ok=True,  # not probed: without Redis and the database the verdict is unhealthy anyway
        max_batches=settings.max_concurrent_batches,
        process_rss_mb=process_rss_mb(),
        errors=errors,
    )
    report = evaluate(snapshot, Thresholds.from_settings(settings))
    log.warning("health: %s", "; ".join(report.problems), extra={"action": "health_unhealthy"})
    return report


async def _database_reachable(settings: Settings, errors: dict[str, str], redactor: Redactor) -> bool:
    engine = make_engine(settings.effective_database_url(), pool_size=1, ssl=settings.database_ssl)
    try:
        await Repository(engine).ping()
    except Exception as exc:
        errors["database"] = redactor.redact(f"{type(exc).__name__}: {exc}")
        return False
    finally:
        await engine.dispose()
    return True
