"""Running the workers: every queue's worker, the job schedulers, the metrics and callback listeners, until told
to stop.

`run_workers(manager, stop)` is what `bouncer-queue workers` and `bouncer-queue verify` run. On start, and
every RECONCILE_INTERVAL_SECONDS after, it offers the ledger's unfinished batches to the queues
(pipeline/recover.py), so work survives Redis losing its data, with no restart. Several processes, on one
machine or many, may run this at once: they share the queues, the batch slots (in the database) and the
rate-limit budget (in the database). With WEBHOOK_SECRET set, it also sends the webhooks of finished requests
(pipeline/webhooks.py); with CALLBACK_PORT set, it serves Bouncer's callbacks (ops/callback_route.py): any
process may receive any batch's callback, since the ledger is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from bouncer_queue.errors import QueueBackendError
from bouncer_queue.ops.callback_route import callback_app, serving_asgi
from bouncer_queue.pipeline.callbacks import CallbackOutcome, handle_callback
from bouncer_queue.pipeline.dispatch import Dispatcher
from bouncer_queue.pipeline.housekeeping import Housekeeping
from bouncer_queue.pipeline.webhooks import WebhookPolicy, WebhookSender
from bouncer_queue.queueing.worker import JobContext, WorkerPool, build_workers
from bouncer_queue.service import QueueManager

log = logging.getLogger(__name__)


def build_pool(manager: QueueManager) -> WorkerPool:
    """The four queues' workers, dispatching to the pipeline stages."""
    rt = manager.runtime
    settings = manager.settings

    async def health_check() -> None:
        await manager.get_health_status(record=True)

    housekeeping = Housekeeping(
        repo=rt.repo,
        limiter=rt.limiter,
        rate_limit_retention_seconds=settings.rate_limit_retention_seconds,
        metrics_retention_days=settings.metrics_retention_days,
        health_check=health_check,
    )
    dispatcher = Dispatcher(rt.ctx, housekeeping)

    async def process(job_name: str, data: Mapping[str, Any], job: JobContext) -> Any:
        started = time.perf_counter()
        ok = False
        try:
            result = await dispatcher.run(job_name, data)
            ok = True
            return result
        finally:
            rt.metrics.observe_job(job.queue, job_name, time.perf_counter() - started, ok)

    return build_workers(
        rt.redis.bullmq_connection(),
        settings.queue_prefix,
        settings.queue_tuning(),
        process,
        drain_delay_seconds=settings.worker_drain_delay_seconds,
        on_final_failure=dispatcher.on_final_failure,
    )


async def run_workers(manager: QueueManager, stop: asyncio.Event) -> None:
    """Run every worker until `stop` is set, then close them within the grace period."""
    settings = manager.settings
    await reconcile(manager)
    pool = build_pool(manager)
    async with serving_metrics(manager), serving_callbacks(manager), reconciling(manager), sending_webhooks(manager):
        await pool.start()
        log.info("workers started", extra={"action": "workers_started"})
        try:
            died = await _until_stopped_or_dead(pool, stop)
        finally:
            log.info("stopping workers", extra={"action": "workers_stopping"})
            await pool.close(settings.shutdown_grace_seconds)
            log.info("workers stopped", extra={"action": "workers_stopped"})
    if died is not None:
        # A queue nobody serves is worse than a process that exits: the supervisor restarts us.
        raise QueueBackendError(f"the worker of {died} stopped unexpectedly; all workers were stopped")


async def _until_stopped_or_dead(pool: WorkerPool, stop: asyncio.Event) -> str | None:
    """Wait for `stop`; or for a worker's loop to end on its own, returning which."""
    stopping = asyncio.create_task(stop.wait(), name="stop")
    dying = asyncio.create_task(pool.wait_until_one_stops(), name="worker-watch")
    done, pending = await asyncio.wait({stopping, dying}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if dying in done and not stop.is_set():
        died = dying.result()
        log.error("worker stopped unexpectedly: %s", died, extra={"action": "worker_died", "queue": died})
        return died
    return None


async def reconcile(manager: QueueManager) -> None:
    """Offer the job schedulers and every unfinished batch's next job to Redis (no-ops for what exists)."""
    settings = manager.settings
    await manager.runtime.admin.upsert_schedulers(
        int(settings.health_check_interval_seconds * 1000), int(settings.cleanup_interval_seconds * 1000)
    )
    await manager.recover()


@contextlib.asynccontextmanager
async def reconciling(manager: QueueManager) -> AsyncIterator[None]:
    """Reconcile every RECONCILE_INTERVAL_SECONDS while the workers run."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(manager.settings.reconcile_interval_seconds)
            try:
                await reconcile(manager)
            except Exception as exc:  # Redis or the database away: the next round tries again
                log.warning("reconciling with the ledger failed: %s", exc, extra={"action": "reconcile_failed"})

    task = asyncio.create_task(loop(), name="reconcile")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def sending_webhooks(manager: QueueManager) -> AsyncIterator[None]:
    """With WEBHOOK_SECRET set: deliver the webhooks of finished requests while the workers run."""
    settings = manager.settings
    if settings.webhook_secret is None:
        yield
        return
    policy = WebhookPolicy(
        secret=settings.webhook_secret.get_secret_value(),
        allow_private=settings.webhook_allow_private,
        max_attempts=settings.webhook_max_attempts,
        backoff_seconds=settings.webhook_backoff_seconds,
        interval_seconds=settings.webhook_interval_seconds,
    )
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=settings.webhook_timeout_seconds, follow_redirects=False) as http:
        task = asyncio.create_task(WebhookSender(manager.runtime.repo, http, policy).run(stop), name="webhooks")
        try:
            yield
        finally:
            stop.set()
            await task


@contextlib.asynccontextmanager
async def serving_metrics(manager: QueueManager) -> AsyncIterator[None]:
    """With METRICS_PORT set: serve the metrics, and refresh the gauges every METRICS_REFRESH_SECONDS."""
    settings = manager.settings
    if settings.metrics_port is None:
        yield
        return
    server = manager.runtime.metrics.serve(settings.metrics_port, settings.metrics_host)
    log.info(
        "metrics on http://%s:%d/",
        server.host,
        server.port,
        extra={"action": "metrics_serving", "host": server.host, "port": server.port},
    )
    refresher = asyncio.create_task(refresh_metrics(manager, settings.metrics_refresh_seconds), name="metrics")
    try:
        yield
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        server.close()


@contextlib.asynccontextmanager
async def serving_callbacks(manager: QueueManager) -> AsyncIterator[None]:
    """With CALLBACK_PORT set: serve Bouncer's callbacks (POST /bouncer/callback/{token}) for the block."""
    settings = manager.settings
    if settings.callback_port is None:
        if settings.bouncer_callback_url:
            log.warning(
                "BOUNCER_CALLBACK_URL is set but CALLBACK_PORT is not: this process serves no callbacks",
                extra={"action": "callbacks_not_served"},
            )
        yield
        return
    ctx = manager.runtime.ctx

    async def handle(token: str, body: Any) -> CallbackOutcome:
        return await handle_callback(ctx, token, body)

    async with serving_asgi(callback_app(handle), settings.callback_host, settings.callback_port) as (host, port):
        log.info(
            "Bouncer callbacks on http://%s:%d/bouncer/callback/",
            host,
            port,
            extra={"action": "callbacks_serving", "host": host, "port": port},
        )
        yield


async def refresh_metrics(manager: QueueManager, every_seconds: float) -> None:
    """Refresh the gauges forever; a failed refresh (Redis or the database away) is logged and retried."""
    while True:
        try:
            await manager.refresh_metrics()
        except Exception as exc:
            log.warning("metrics refresh failed: %s", exc, extra={"action": "metrics_refresh_failed"})
        await asyncio.sleep(every_seconds)
