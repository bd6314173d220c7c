"""QueueManager: the service layer shared by the Python API, the CLI, the HTTP API and the dashboard.

It is the seed's queueManager in async Python: start(), add_emails_to_queue(), get_queue_stats(),
get_health_status(), pause_queue(), resume_queue(), retry_failed_jobs(), clean_failed_jobs(), stop(), plus the
request, export, dead-letter, API-token and webhook calls the interfaces need. Every interface calls these
methods and nothing below them, so the CLI, the HTTP API and the dashboard cannot drift apart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Collection, Iterable
from contextlib import AsyncExitStack
from typing import Any

import httpx

from bouncer_queue import access
from bouncer_queue.access import IssuedToken, Scope
from bouncer_queue.bootstrap import Runtime, open_runtime
from bouncer_queue.bouncer import AuthError, Forbidden
from bouncer_queue.bouncer.client import ApiKeyProvider
from bouncer_queue.config import Settings
from bouncer_queue.domain import BatchState, Priority, RequestState
from bouncer_queue.errors import QueueBackendError
from bouncer_queue.ops.health import HealthReport, HealthSnapshot, Thresholds, evaluate, log_alerts, process_rss_mb
from bouncer_queue.ops.metrics import Metrics
from bouncer_queue.ops.redact import Redactor
from bouncer_queue.pipeline import deadletter, recover
from bouncer_queue.pipeline.ingest import AddResult, EmailInput, Tracking, add_emails_to_queue
from bouncer_queue.queueing.names import ALL_QUEUES, DEAD_LETTER, WORK_QUEUES, check_queue_name
from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.records import (
    ApiToken,
    BatchRecord,
    DeadLetter,
    ExportRow,
    HealthMetric,
    RequestProgress,
    RequestRecord,
    WebhookDelivery,
)
from bouncer_queue.storage.repository import Repository
from bouncer_queue.tracking import RequestStatus, status_of

log = logging.getLogger(__name__)


class QueueManager:
    """The whole system behind one object. Use as `async with QueueManager(settings) as qm:` or start()/stop()."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        bouncer_transport: httpx.AsyncBaseTransport | None = None,
        metrics: Metrics | None = None,
        api_key: ApiKeyProvider | None = None,
        auto_migrate: bool | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._transport = bouncer_transport
        self._metrics = metrics
        self._api_key = api_key
        self._auto_migrate = auto_migrate
        self._stack: AsyncExitStack | None = None
        self._runtime: Runtime | None = None
        self._started_at = time.monotonic()

    async def __aenter__(self) -> QueueManager:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("QueueManager is not started; call `await start()` first")
        return self._runtime

    async def start(self) -> None:
        """Open Redis, the database and the Bouncer client. Idempotent."""
        if self._runtime is not None:
            return
        stack = AsyncExitStack()
        try:
            self._runtime = await stack.enter_async_context(
                open_runtime(
                    self.settings,
                    bouncer_transport=self._transport,
                    metrics=self._metrics,
                    api_key=self._api_key,
                    auto_migrate=self._auto_migrate,
                )
            )
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._started_at = time.monotonic()

    async def stop(self) -> None:
        """Close everything start() opened. Idempotent."""
        stack, self._stack, self._runtime = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    # Requests

    async def add_emails_to_queue(
        self,
        emails: Iterable[EmailInput] | AsyncIterable[EmailInput],
        user_id: str,
        request_id: str | None = None,
        *,
        priority: str | Priority = Priority.NORMAL,
        delay: int = 0,
        fingerprint: str | None = None,
        source: str | None = None,
        tracking: Tracking | None = None,
    ) -> AddResult:
        """Store and enqueue a list; `delay` (ms) holds back its first jobs. A `request_id` already stored is
        returned as it is (`existing`), and nothing is stored; `fingerprint` lets `find_request` find it.
        `tracking` adds an idempotency key (a request already stored under it is returned instead) and a
        webhook URL."""
        rt = self.runtime
        return await add_emails_to_queue(
            rt.repo,
            rt.enqueuer,
            emails,
            user_id=user_id,
            request_id=request_id,
            priority=priority,
            delay_ms=delay,
            batch_size=self.settings.batch_size,
            fingerprint=fingerprint,
            source=source,
            tracking=tracking,
        )

    async def find_request(self, fingerprint: str) -> RequestRecord | None:
        """The newest request stored with this content fingerprint, or None."""
        return await self.runtime.repo.find_request_by_fingerprint(fingerprint)

    async def list_requests(
        self, *, user_id: str | None = None, status: RequestState | None = None, limit: int = 50, offset: int = 0
    ) -> list[RequestRecord]:
        return await self.runtime.repo.list_requests(user_id=user_id, status=status, limit=limit, offset=offset)

    async def get_request(self, request_id: str) -> RequestRecord | None:
        return await self.runtime.repo.get_request(request_id)

    async def request_status(self, request_id: str) -> RequestStatus | None:
        """The request with its counts, timeline and ETA; None for an unknown id."""
        repo = self.runtime.repo
        request = await repo.get_request(request_id)
        if request is None:
            return None
        return status_of(request, await repo.request_progress(request_id), await repo.request_timeline(request_id))

    async def request_batches(self, request_id: str) -> list[BatchRecord]:
        return await self.runtime.repo.request_batches(request_id)

    async def webhook_deliveries(self, request_id: str | None = None) -> list[WebhookDelivery]:
        return await self.runtime.repo.list_webhook_deliveries(request_id)

    async def request_progress(self, request_id: str) -> RequestProgress:
        return await self.runtime.repo.request_progress(request_id)

    def export(self, request_id: str, statuses: Collection[str] | None = None) -> AsyncIterator[ExportRow]:
        return self.runtime.repo.iter_export(request_id, statuses)

    async def recover(self) -> int:
        """Re-enqueue the next job of every unfinished batch from the database (after a Redis loss)."""
        return await recover.recover(self.runtime.ctx)

    # API tokens

    async def create_token(self, name: str, scopes: Collection[Scope]) -> IssuedToken:
        """A new token; its value is in the answer and nowhere else."""
        token = access.new_token()
        stored = await self.runtime.repo.add_token(
            name, access.hash_token(token), access.public_prefix(token), [s.value for s in scopes]
        )
        return IssuedToken(stored.id, stored.name, token, stored.scopes)

    async def list_tokens(self) -> list[ApiToken]:
        return await self.runtime.repo.list_tokens()

    async def revoke_token(self, name_or_id: str) -> int:
        return await self.runtime.repo.revoke_token(name_or_id)

    async def authenticate(self, token: str) -> ApiToken | None:
        """The live token `token` is, or None."""
        return await self.runtime.repo.find_token(access.hash_token(token))

    # Queue operations (seed, "Queue Operations")

    async def get_queue_stats(self) -> dict[str, dict[str, int]]:
        return await self.runtime.admin.counts()

    async def paused_queues(self) -> list[str]:
        """The queues that are paused now."""
        return [queue for queue in ALL_QUEUES if await self.runtime.admin.is_paused(queue)]

    async def pause_queue(self, queue: str) -> None:
        await self.runtime.admin.pause(check_queue_name(queue))

    async def resume_queue(self, queue: str) -> None:
        await self.runtime.admin.resume(check_queue_name(queue))

    async def retry_failed_jobs(self, queue: str) -> int:
        return await self.runtime.admin.retry_failed(check_queue_name(queue))

    async def clean_failed_jobs(self, queue: str, hours: float = 24) -> int:
        return await self.runtime.admin.clean_failed(check_queue_name(queue), hours)

    # Dead letters

    async def dead_letters(self, *, include_replayed: bool = False, limit: int = 100) -> list[DeadLetter]:
        return await self.runtime.repo.list_dead_letters(include_replayed=include_replayed, limit=limit)

    async def get_dead_letter(self, letter_id: int) -> DeadLetter | None:
        return await self.runtime.repo.get_dead_letter(letter_id)

    async def replay_dead_letter(self, letter_id: int, *, force: bool = False) -> bool:
        """Replay one dead letter; ReplayRefused for one that may have been charged, unless `force`."""
        return await deadletter.replay(self.runtime.ctx, letter_id, force=force)

    async def replay_all_dead_letters(self, *, force: bool = False) -> int:
        """Replay every dead letter not yet replayed; without `force`, those that may have been charged are
        left alone (see `dead_letters_needing_force`)."""
        letters = await self.dead_letters(limit=10_000)
        chosen = [d for d in letters if force or not deadletter.may_have_been_charged(d)]
        return sum([await self.replay_dead_letter(d.id, force=force) for d in chosen])

    async def dead_letters_needing_force(self) -> list[DeadLetter]:
        """The unreplayed dead letters whose batch may have been charged."""
        return [d for d in await self.dead_letters(limit=10_000) if deadletter.may_have_been_charged(d)]

    # Health (seed, "Monitoring and Health")

    async def get_health_status(self, *, record: bool = False) -> HealthReport:
        """Probe Redis, the database and Bouncer, and judge the result against the alert thresholds."""
        snapshot = await self._snapshot()
        report = evaluate(snapshot, Thresholds.from_settings(self.settings))
        if record:
            await self._record(report)
            log_alerts(report, log)
        return report

    async def refresh_metrics(self) -> None:
        """Set the queue, rate-limit and batch gauges from Redis and the database; no Bouncer call."""
        errors: dict[str, str] = {}
        counts = await self._counts(errors)
        usage = await self._utilization(errors)
        in_flight = await self.runtime.repo.in_flight_count()
        self._publish(counts, usage, in_flight, None)

    async def health_history(self, limit: int = 20) -> list[HealthMetric]:
        return await self.runtime.repo.recent_health_metrics(limit)

    async def _snapshot(self) -> HealthSnapshot:
        rt = self.runtime
        errors: dict[str, str] = {}
        redis_ms, redis_mem, redis_max = await self._redis_probe(errors)
        db_ms = await self._database_probe(errors)
        credits = await self._credits_probe(errors)
        counts = await self._counts(errors)
        usage = await self._utilization(errors)
        backlog = sum(counts.get(q, {}).get(s, 0) for q in WORK_QUEUES for s in ("waiting", "delayed"))
        failed = sum(counts.get(q, {}).get("failed", 0) for q in WORK_QUEUES)
        in_flight = await rt.repo.in_flight_count() if db_ms is not None else 0
        gate_closed = await rt.credits_gate.is_closed() if redis_ms is not None else False
        key_refused = await self.api_key_refused() if redis_ms is not None else None
        oldest = await rt.admin.oldest_waiting_age_seconds() if redis_ms is not None else None
        self._publish(counts, usage, in_flight, credits)
        return HealthSnapshot(
            redis_ok=redis_ms is not None,
            redis_latency_ms=redis_ms,
            database_ok=db_ms is not None,
            database_latency_ms=db_ms,
            bouncer_ok="bouncer" not in errors,
            credits_left=credits,
            rate_limit_utilization=usage,
            process_rss_mb=process_rss_mb(),
            redis_used_memory_mb=redis_mem,
            redis_maxmemory_mb=redis_max,
            uptime_seconds=time.monotonic() - self._started_at,
            batches_in_flight=in_flight,
            max_batches=self.settings.max_concurrent_batches,
            backlog=backlog,
            failed_jobs=failed,
            oldest_waiting_age_seconds=oldest,
            credits_exhausted=gate_closed,
            api_key_refused=key_refused,
            errors=errors,
        )

    async def _redis_probe(self, errors: dict[str, str]) -> tuple[float | None, float | None, float | None]:
        client = self.runtime.redis.open_client()
        try:
            started = time.perf_counter()
            info: dict[str, Any] = await client.info("memory")
            latency = (time.perf_counter() - started) * 1000
        except Exception as exc:  # any failure is a finding of the probe, not an error of the health call
            errors["redis"] = f"{type(exc).__name__}: {self._scrub(str(exc))}"
            return None, None, None
        finally:
            await client.aclose()
        mb = 1024 * 1024
        maxmemory = float(info.get("maxmemory", 0) or 0)
        return latency, float(info.get("used_memory", 0)) / mb, (maxmemory / mb) or None

    async def _database_probe(self, errors: dict[str, str]) -> float | None:
        try:
            return await self.runtime.repo.ping() * 1000
        except Exception as exc:
            errors["database"] = self._scrub(str(exc))
            return None

    async def _credits_probe(self, errors: dict[str, str]) -> int | None:
        """Credits left at Bouncer; also reopens the credits gate when they are back."""
        rt = self.runtime
        try:
            decision = await rt.limiter.acquire(["credits"], "credits")
            if not decision.allowed:
                return None  # Bouncer allows 10 credit checks a minute; skipping one is not a failure
            credits = await rt.bouncer.credits()
        except (AuthError, Forbidden) as exc:
            await rt.auth_gate.close(str(exc))
            errors["bouncer"] = self._scrub(str(exc))
            return None
        except Exception as exc:
            errors["bouncer"] = self._scrub(str(exc))
            return None
        await rt.auth_gate.open()  # the key in force was just accepted
        if await rt.credits_gate.is_closed() and credits >= await self._credits_needed():
            await rt.credits_gate.open()
            log.warning("Bouncer credits are back; submissions resume", extra={"action": "credits_restored"})
        return credits

    async def api_key_refused(self) -> str | None:
        """Why Bouncer refused the API key in force (the auth gate is closed), or None."""
        gate = self.runtime.auth_gate
        return await gate.reason() if await gate.is_closed() else None

    async def _credits_needed(self) -> int:
        """What the smallest waiting batch costs: reopening the gate for less would only earn another 402."""
        pending = await self.runtime.repo.batches_in_states([BatchState.PENDING])
        return min((b.quantity for b in pending), default=1)

    async def _counts(self, errors: dict[str, str]) -> dict[str, dict[str, int]]:
        try:
            return await self.runtime.admin.counts()
        except Exception as exc:
            errors.setdefault("redis", self._scrub(str(exc)))
            return {}

    async def _utilization(self, errors: dict[str, str]) -> dict[str, float]:
        try:
            usage = await self.runtime.limiter.usage()
        except Exception as exc:
            errors.setdefault("database", self._scrub(str(exc)))
            return {}
        return {name: used / limit if limit else 0.0 for name, (used, limit) in usage.items()}

    def _publish(
        self, counts: dict[str, dict[str, int]], usage: dict[str, float], in_flight: int, credits: int | None
    ) -> None:
        metrics = self.runtime.metrics
        metrics.set_queue_counts(counts)
        for budget, value in usage.items():
            metrics.set_rate_limit_utilization(budget, value)
        metrics.set_batches_in_flight(in_flight)
        if credits is not None:
            metrics.set_credits_left(credits)

    async def _record(self, report: HealthReport) -> None:
        data = report.to_dict()
        snap = data.get("snapshot", {})
        numbers = {
            "backlog": snap.get("backlog"),
            "failed_jobs": snap.get("failed_jobs"),
            "rate_limit_utilization": max((snap.get("rate_limit_utilization") or {}).values(), default=None),
            "memory_mb": snap.get("process_rss_mb"),
            "redis_latency_ms": snap.get("redis_latency_ms"),
            "batches_in_flight": snap.get("batches_in_flight"),
            "credits_left": snap.get("credits_left"),
        }
        alerts = tuple(alert.name for alert in report.alerts)
        metric = HealthMetric(status=report.status, snapshot=data, alerts=alerts)
        await self.runtime.repo.record_health_metric(metric, numbers)

    def _scrub(self, text: str) -> str:
        return scrub(self.settings, text)


def scrub(settings: Settings, text: str) -> str:
    """`text` without the secrets of `settings`, nor anything shaped like a secret (a URL's password, ...)."""
    return Redactor(settings.secrets()).redact(text)


async def check_health(settings: Settings) -> HealthReport:
    """The health report, also when the system cannot start: Redis or the database down is a finding, not a crash."""
    manager = QueueManager(settings)
    try:
        await manager.start()
    except Exception as exc:
        return await _report_without_runtime(settings, exc)
    try:
        return await manager.get_health_status()
    finally:
        await manager.stop()


async def _report_without_runtime(settings: Settings, error: Exception) -> HealthReport:
    """Why start() failed, as a report: Redis refused (QueueBackendError), or the database (probed on its own)."""
    errors: dict[str, str] = {}
    redis_ok = not isinstance(error, QueueBackendError)
    if not redis_ok:
        errors["redis"] = scrub(settings, str(error))
    database_ok = await _database_reachable(settings, errors)
    if redis_ok and database_ok:
        # Both answer, yet the runtime would not open: the schema is behind, for example.
        database_ok = False
        errors["database"] = scrub(settings, f"{type(error).__name__}: {error}")
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


async def _database_reachable(settings: Settings, errors: dict[str, str]) -> bool:
    engine = make_engine(settings.effective_database_url(), pool_size=1, ssl=settings.database_ssl)
    try:
        await Repository(engine).ping()
    except Exception as exc:
        errors["database"] = scrub(settings, f"{type(exc).__name__}: {exc}")
        return False
    finally:
        await engine.dispose()
    return True


__all__ = ["ALL_QUEUES", "DEAD_LETTER", "QueueManager", "check_health"]
