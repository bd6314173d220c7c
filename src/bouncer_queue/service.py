"""QueueManager: the service layer shared by the Python API, the CLI, the HTTP API and the dashboard.

It is the seed's queueManager in async Python: start(), add_emails_to_queue(), get_queue_stats(),
get_health_status(), pause_queue(), resume_queue(), retry_failed_jobs(), clean_failed_jobs(), stop(), plus the
request, export, dead-letter, API-token and webhook calls the interfaces need. Every interface calls these
methods and nothing below them, so the CLI, the HTTP API and the dashboard cannot drift apart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Collection, Iterable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bouncer_queue import access
from bouncer_queue.access import IssuedToken, Scope
from bouncer_queue.bootstrap import Runtime, open_runtime
from bouncer_queue.bouncer import BouncerError
from bouncer_queue.bouncer.client import ApiKeyProvider
from bouncer_queue.config import Settings
from bouncer_queue.credits.cache import cache_since
from bouncer_queue.credits.estimate import Balance, Budgets, Estimate, count_rows, read_balance, stored_counts
from bouncer_queue.credits.reservations import CreditLimit, credits_report
from bouncer_queue.domain import Priority, RequestState
from bouncer_queue.ops.health import HealthProbe, HealthReport, report_without_runtime
from bouncer_queue.ops.heartbeat import WorkerInfo, live_workers
from bouncer_queue.ops.metrics import Metrics
from bouncer_queue.ops.redact import Redactor
from bouncer_queue.pipeline import cancel, deadletter, recover
from bouncer_queue.pipeline.cancel import CancelResult
from bouncer_queue.pipeline.ingest import AddResult, CreditOptions, EmailInput, Tracking, add_emails_to_queue
from bouncer_queue.queueing.names import ALL_QUEUES, DEAD_LETTER, WORK_QUEUES, check_queue_name
from bouncer_queue.storage.records import (
    ApiToken,
    BatchProgress,
    BatchRecord,
    DeadLetter,
    EmailRow,
    ExportRow,
    HealthMetric,
    RequestProgress,
    RequestRecord,
    WebhookDelivery,
)
from bouncer_queue.storage.repository import RequestCredits
from bouncer_queue.tracking import RequestStatus, status_of

log = logging.getLogger(__name__)

#: A recorded balance was read at most this long before its health check recorded it (the check's Bouncer call
#: and database probes are bounded by their timeouts, well under a minute).
RECORDED_BALANCE_MARGIN_SECONDS = 60.0
#: How long a balance read from Bouncer serves this process's next submissions and estimates (its date goes with it).
BALANCE_REUSE_SECONDS = 15.0


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
        #: The last balance read from Bouncer: (monotonic time of the read, its date, the credits).
        self._last_balance: tuple[float, datetime, int] | None = None
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
        credits: CreditOptions | None = None,
        on_stored: Callable[[str], Awaitable[None]] | None = None,
        read_ahead: bool = True,
    ) -> AddResult:
        """Store a list chunk by chunk, enqueueing each chunk's batch as soon as it is stored; `delay` (ms) holds
        back its first jobs. A `request_id` already stored is returned as it is (`existing`), and nothing is
        stored, unless that request is still `ingesting`: then the rest of the list is stored (rows after its
        highest stored row number). `fingerprint` lets `find_request` find it. `tracking` adds an idempotency key
        (a request already stored under it is returned, or resumed the same way) and a webhook URL. `credits`
        (default: the result cache of RESULT_CACHE_DAYS, no credit check) says how the request may spend;
        `on_stored(request_id)` runs once the whole list is stored. `read_ahead` reads the next chunk while one
        is stored (one chunk more in memory)."""
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
            credits=credits or CreditOptions(cache_days=self.settings.result_cache_days),
            on_stored=on_stored,
            read_ahead=read_ahead,
            # Creates of workers in this process first (verify); a no-op where none run (submit, serve).
            between_chunks=rt.ctx.precedence.after_urgent,
        )

    async def find_request(self, fingerprint: str) -> RequestRecord | None:
        """The newest request stored with this content fingerprint, or None."""
        return await self.runtime.repo.find_request_by_fingerprint(fingerprint)

    async def list_requests(
        self, *, user_id: str | None = None, status: RequestState | None = None, limit: int = 50, offset: int = 0
    ) -> list[RequestRecord]:
        return await self.runtime.repo.list_requests(user_id=user_id, status=status, limit=limit, offset=offset)

    async def get_request(self, request_id: str) -> RequestRecord | None:
        """The request's row, or None for an unknown id."""
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

    async def cancel_request(self, request_id: str) -> CancelResult:
        """Cancel a request: batches not yet sent never are; batches at Bouncer are finished early, so Bouncer
        refunds the addresses it had not verified. `found` is False for an unknown id. Safe to repeat."""
        return await cancel.cancel_request(self.runtime.ctx, request_id)

    async def live_worker_count(self) -> int:
        """Workers processes alive now (unexpired heartbeats, ops/heartbeat.py) that serve a pipeline queue."""
        return sum(1 for worker in await self.live_workers() if set(worker.queues) & set(WORK_QUEUES))

    # Credits (credits/): what a list would cost, what the balance is, what requests hold and spend

    async def estimate(
        self, rows: Iterable[EmailRow], blank_rows: Callable[[], int] = lambda: 0, *, use_cache: bool = True
    ) -> Estimate:
        """What the rows would cost, read as add_emails_to_queue reads them; stores nothing (one /credits call).
        `blank_rows` tells, once the rows are read, how many the reader skipped for having no address."""
        days = self.settings.result_cache_days if use_cache else 0
        counts = await count_rows(rows, blank_rows, self.runtime.repo, cache_since(days))
        return Estimate.of(counts, await self.credit_balance(), self._budgets())

    async def stored_estimate(self, request_id: str, blank_rows: int, balance: Balance) -> Estimate:
        """The estimate's counts read back from a request just stored, before any of it is sent."""
        repo = self.runtime.repo
        progress, request = await repo.request_progress(request_id), await repo.get_request(request_id)
        billable = request.billable if request is not None else 0
        counts = stored_counts(progress.emails_by_state, billable, blank_rows)
        return Estimate.of(counts, balance, self._budgets())

    async def credit_balance(self) -> Balance:
        """Bouncer's balance (one /credits call through the shared limiter) and what unsent requests hold.

        Bouncer answers 10 credit checks a minute, which health checks and every submission share. When no slot
        comes in time, or Bouncer does not answer, the balance is the newest one a health check recorded, dated
        RECORDED_BALANCE_MARGIN_SECONDS before it was recorded: every batch sent since that date counts as held,
        so an older figure is never more generous than a fresh one (only a top-up since is missed). Unknown
        (None) when no health check has recorded one.

        A balance read in the last BALANCE_REUSE_SECONDS by this process is used again, with its date (a server
        taking many lists would otherwise spend the budget the health checks need to see a top-up)."""
        last, now = self._last_balance, time.monotonic()
        if last is not None and now - last[0] < BALANCE_REUSE_SECONDS:
            return Balance(last[1], last[2], await self._reserved())
        checked_at = datetime.now(UTC)  # before the call: batches sent after it count as held
        at_bouncer = await self._balance()
        if at_bouncer is not None:
            self._last_balance = (now, checked_at, at_bouncer)
        elif (recorded := await self.runtime.repo.latest_credits()) is not None:
            at_bouncer, recorded_at = recorded
            checked_at = recorded_at - timedelta(seconds=RECORDED_BALANCE_MARGIN_SECONDS)
        return Balance(checked_at, at_bouncer, await self._reserved())

    async def credit_options(
        self, *, max_credits: int | None = None, allow_partial: bool = False, use_cache: bool = True
    ) -> tuple[CreditOptions, Balance]:
        """How a submission may spend, for `add_emails_to_queue`: answers reused from RESULT_CACHE_DAYS (none
        without `use_cache`), and a check, with each chunk stored, against `max_credits` and the balance read
        now less what other requests hold; `allow_partial` lifts the refusal. Every interface submits with it
        (the CLI, the HTTP API and its upload form). With the balance read, for an estimate."""
        balance = await self.credit_balance()
        limit = CreditLimit(balance.checked_at, balance.at_bouncer, max_credits, allow_partial)
        cache_days = self.settings.result_cache_days if use_cache else 0
        return CreditOptions(cache_days=cache_days, check=limit), balance

    def _budgets(self) -> Budgets:
        s = self.settings
        return Budgets(s.batch_size, s.rate_limit_window_seconds, s.rate_limit_max, s.rate_limit_create_max)

    async def request_credits(self, request_ids: list[str] | None = None) -> list[RequestCredits]:
        """Credits per request (the active ones unless named): billable, reserved, spent."""
        return await self.runtime.repo.request_credits(request_ids)

    async def credits_report(self, at_bouncer: int | None) -> dict[str, Any]:
        """Credits at Bouncer (as last read), reserved, available and spent, in all and per active request."""
        return credits_report(await self.request_credits(), at_bouncer)

    async def last_known_credits(self) -> int | None:
        """The balance the newest health check that asked Bouncer recorded (no Bouncer call), or None."""
        latest = await self.runtime.read_repo.latest_credits()
        return latest[0] if latest is not None else None

    async def _balance(self) -> int | None:
        rt = self.runtime

        async def acquire() -> int:
            decision = await rt.limiter.acquire(["credits"], "credits")
            return 0 if decision.allowed else max(decision.wait_ms, 1)

        try:
            return await read_balance(acquire, rt.bouncer.credits)
        except BouncerError as exc:  # an estimate without the balance still counts the list
            log.warning("credits unknown: %s", scrub(self.settings, str(exc)), extra={"action": "credits_unknown"})
            return None

    async def _reserved(self) -> int:
        return sum(r.reserved for r in await self.request_credits())

    # Monitoring reads go to DATABASE_READ_URL's replica when one is configured (runtime.read_repo).

    async def request_progress(self, request_id: str) -> RequestProgress:
        return await self.runtime.read_repo.request_progress(request_id)

    async def batch_progress(self, request_id: str) -> BatchProgress:
        return await self.runtime.read_repo.batch_progress(request_id)

    def export(self, request_id: str, statuses: Collection[str] | None = None) -> AsyncIterator[ExportRow]:
        return self.runtime.read_repo.iter_export(request_id, statuses)

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
        """Job counts by queue and state, each job in one state (QueueAdmin.counts)."""
        return await self.runtime.admin.counts()

    async def paused_queues(self) -> list[str]:
        """The queues that are paused now."""
        return [queue for queue in ALL_QUEUES if await self.runtime.admin.is_paused(queue)]

    async def get_bullmq_stats(self) -> dict[str, dict[str, int | bool]]:
        """BullMQ's own job counts by queue, plus isPaused: what bull-board and Node's Queue.getJobCounts show."""
        return await self.runtime.admin.bullmq_counts()

    async def pause_queue(self, queue: str) -> None:
        await self.runtime.admin.pause(check_queue_name(queue))

    async def resume_queue(self, queue: str) -> None:
        await self.runtime.admin.resume(check_queue_name(queue))

    async def retry_failed_jobs(self, queue: str) -> int:
        return await self.runtime.admin.retry_failed(check_queue_name(queue))

    async def clean_failed_jobs(self, queue: str, hours: float = 24) -> int:
        return await self.runtime.admin.clean_failed(check_queue_name(queue), hours)

    async def purge_queue(self, queue: str) -> int:
        """Remove every job of `queue` that is not running; the ledger is untouched, so the unfinished batches
        of requests not cancelled are offered again by the next reconcile."""
        return await self.runtime.admin.purge(check_queue_name(queue))

    # Dead letters

    async def dead_letters(self, *, include_replayed: bool = False, limit: int = 100) -> list[DeadLetter]:
        return await self.runtime.read_repo.list_dead_letters(include_replayed=include_replayed, limit=limit)

    async def get_dead_letter(self, letter_id: int) -> DeadLetter | None:
        return await self.runtime.repo.get_dead_letter(letter_id)

    async def replay_dead_letter(self, letter_id: int, *, force: bool = False) -> bool:
        """Replay one dead letter; ReplayRefused for one that may have been charged, unless `force`."""
        return await deadletter.replay(self.runtime.ctx, letter_id, force=force)

    async def replay_all_dead_letters(self, *, force: bool = False) -> int:
        """Replay every dead letter not yet replayed; without `force`, those that may have been charged are
        left alone (see `dead_letters_needing_force`)."""
        # From the primary: a replica's lag must not leave the newest letters out of "all".
        letters = await self.runtime.repo.list_dead_letters(limit=10_000)
        chosen = [d for d in letters if force or not deadletter.may_have_been_charged(d)]
        return sum([await self.replay_dead_letter(d.id, force=force) for d in chosen])

    async def dead_letters_needing_force(self) -> list[DeadLetter]:
        """The unreplayed dead letters whose batch may have been charged."""
        return [d for d in await self.dead_letters(limit=10_000) if deadletter.may_have_been_charged(d)]

    # Health (seed, "Monitoring and Health"): probing lives in ops/health

    @property
    def health(self) -> HealthProbe:
        return HealthProbe(self.runtime, self._started_at)

    async def get_health_status(self, *, live: bool = False, record: bool = False) -> HealthReport:
        """Probe Redis, the database and the workers; credits as last recorded, or asked of Bouncer when `live`."""
        return await self.health.report(live=live, record=record)

    async def refresh_metrics(self) -> None:
        """Set the queue, rate-limit and batch gauges from Redis and the database; no Bouncer call."""
        await self.health.refresh_metrics()

    async def health_history(self, limit: int = 20) -> list[HealthMetric]:
        return await self.runtime.read_repo.recent_health_metrics(limit)

    async def live_workers(self) -> list[WorkerInfo]:
        """The workers processes whose heartbeat has not expired."""
        client = self.runtime.redis.open_client()
        try:
            return await live_workers(client, self.settings.queue_prefix)
        finally:
            await client.aclose()

    async def api_key_refused(self) -> str | None:
        """Why Bouncer refused the API key in force (the auth gate is closed), or None."""
        gate = self.runtime.auth_gate
        return await gate.reason() if await gate.is_closed() else None


def scrub(settings: Settings, text: str) -> str:
    """`text` without the secrets of `settings`, nor anything shaped like a secret (a URL's password, ...)."""
    return Redactor(settings.secrets()).redact(text)


async def check_health(settings: Settings, *, live: bool = False) -> HealthReport:
    """The health report, also when the system cannot start: Redis or the database down is a finding, not a crash."""
    manager = QueueManager(settings)
    try:
        await manager.start()
    except Exception as exc:
        return await report_without_runtime(settings, exc)
    try:
        return await manager.get_health_status(live=live)
    finally:
        await manager.stop()


__all__ = ["ALL_QUEUES", "DEAD_LETTER", "QueueManager", "check_health"]
