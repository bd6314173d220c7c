"""Running the workers: every queue's worker, the job schedulers, heartbeat, HTTP listener, until told to stop.

`run_workers(manager, stop)` is what `bouncer-queue workers` and `bouncer-queue verify` run. On start, and
every RECONCILE_INTERVAL_SECONDS after, it offers the ledger's unfinished batches to the queues
(pipeline/recover.py), so work survives Redis losing its data, with no restart. Several processes, on one
machine or many, may run this at once: they share the queues, the batch slots (in the database) and the
rate-limit budget (in the database). With WEBHOOK_SECRET set, it also sends the webhooks of finished requests
(pipeline/webhooks.py). Each writes a heartbeat to Redis (ops/heartbeat.py) and, with METRICS_PORT set, serves
/metrics, /livez and /readyz (ops/probes.py) on the listener of ops/listener.py, which also takes routes of other
features (`run_workers(..., endpoints=...)`). With CALLBACK_PORT set, the same listener (or one of its own, on
another port) serves Bouncer's callbacks (ops/callback_route.py): any process may receive any batch's callback,
since the ledger is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx

from bouncer_queue import __version__
from bouncer_queue.aio import cancel_and_wait
from bouncer_queue.bootstrap import worker_name
from bouncer_queue.errors import QueueBackendError
from bouncer_queue.ops.callback_route import callback_routes
from bouncer_queue.ops.heartbeat import Heartbeat, beating, make_info
from bouncer_queue.ops.listener import Endpoint, serving
from bouncer_queue.ops.metrics import JobOutcome
from bouncer_queue.ops.periodic import every
from bouncer_queue.ops.probes import Liveness, LoopMonitor, ops_routes
from bouncer_queue.pipeline.callbacks import CallbackOutcome, handle_callback
from bouncer_queue.pipeline.dispatch import Dispatcher
from bouncer_queue.pipeline.housekeeping import Housekeeping
from bouncer_queue.pipeline.outcomes import Defer
from bouncer_queue.pipeline.webhooks import WebhookPolicy, WebhookSender
from bouncer_queue.queueing.connection import check_reachable
from bouncer_queue.queueing.worker import JobContext, WorkerPool, build_workers
from bouncer_queue.service import QueueManager
from bouncer_queue.storage.repository import Repository

log = logging.getLogger(__name__)


def build_pool(manager: QueueManager) -> WorkerPool:
    """The four queues' workers, dispatching to the pipeline stages."""
    rt = manager.runtime
    settings = manager.settings

    async def health_check() -> None:
        await manager.get_health_status(live=True, record=True)

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
        outcome: JobOutcome = "failed"
        try:
            result = await dispatcher.run(job_name, data)
            outcome = "completed"
            return await job_summary(rt.repo, job_name, data, result)
        except Defer:
            outcome = "deferred"
            raise
        finally:
            rt.metrics.observe_job(job.queue, job_name, time.perf_counter() - started, outcome)

    async def on_final_failure(
        queue: str, job_name: str, data: Mapping[str, Any], error: BaseException, attempts: int
    ) -> None:
        await dispatcher.on_final_failure(queue, job_name, data, error, attempts)
        rt.metrics.dead_lettered(queue, job_name)

    return build_workers(
        rt.redis,
        settings.queue_prefix,
        settings.queue_tuning(),
        process,
        drain_delay_seconds=settings.worker_drain_delay_seconds,
        on_final_failure=on_final_failure,
        name=worker_name(),
    )


async def job_summary(repo: Repository, job_name: str, data: Mapping[str, Any], result: Any) -> dict[str, Any]:
    """What a job returns to BullMQ (QueueEvents, bull-board): a stage's own dict, else the batch's state and
    counts after the job, so Node's tools show more than `null`."""
    summary: dict[str, Any] = {"job_name": job_name}
    if isinstance(result, Mapping):
        return summary | dict(result)
    batch_id = data.get("batch_id")
    batch = await repo.get_batch(batch_id) if isinstance(batch_id, int) else None
    if batch is None:
        return summary
    return summary | {
        "batch_id": batch.id,
        "request_id": batch.request_id,
        "state": str(batch.status),
        "emails": batch.quantity,
        "retries": batch.retries,
    }


async def run_workers(manager: QueueManager, stop: asyncio.Event, endpoints: Sequence[Endpoint] = ()) -> None:
    """Run every worker until `stop` is set, then close them within the grace period.

    `endpoints` are extra HTTP routes for the workers' listener (see ops/listener.py), served beside the
    operations routes when METRICS_PORT is set, or on their own address.
    """
    settings = manager.settings
    await reconcile(manager)
    if stop.is_set():
        return  # stopped while starting (verify interrupted): build no worker, leave nothing to close
    pool = build_pool(manager)
    async with (
        LoopMonitor().running() as loop,
        heartbeat(manager, pool.queues) as beat,
        serving_http(manager, Liveness(loop, beat), endpoints),
        refreshing_metrics(manager),
        reconciling(manager),
        sending_webhooks(manager),
    ):
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
    await cancel_and_wait(*pending)
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
    """Reconcile every RECONCILE_INTERVAL_SECONDS while the workers run (the first round after one interval)."""

    async def step() -> None:
        try:
            await reconcile(manager)
        except Exception as exc:  # Redis or the database away: the next round tries again
            log.warning("reconciling with the ledger failed: %s", exc, extra={"action": "reconcile_failed"})

    async with every(manager.settings.reconcile_interval_seconds, step, "reconcile", first_after=True):
        yield


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
async def heartbeat(manager: QueueManager, queues: Sequence[str]) -> AsyncIterator[Heartbeat]:
    """This process's heartbeat in Redis, renewed every HEARTBEAT_INTERVAL_SECONDS, withdrawn on exit."""
    settings = manager.settings
    client = manager.runtime.redis.open_client()
    info = make_info(worker_name(), socket.gethostname(), os.getpid(), queues, __version__)
    beat = Heartbeat(client, settings.queue_prefix, info, settings.heartbeat_ttl_seconds)
    try:
        async with beating(beat, settings.heartbeat_interval_seconds):
            yield beat
    finally:
        await client.aclose()


def ops_endpoint(manager: QueueManager, liveness: Liveness) -> Endpoint:
    """/metrics, /livez and /readyz on METRICS_HOST:METRICS_PORT."""
    settings = manager.settings
    rt = manager.runtime
    assert settings.metrics_port is not None
    readiness = {"redis": lambda: check_reachable(rt.redis), "database": rt.repo.ping}
    routes = ops_routes(rt.metrics, liveness, readiness)
    return Endpoint(settings.metrics_host, settings.metrics_port, "METRICS_PORT", routes)


def callback_endpoint(manager: QueueManager) -> Endpoint | None:
    """POST /bouncer/callback/{token} on CALLBACK_HOST:CALLBACK_PORT (shared with METRICS_PORT when equal)."""
    settings = manager.settings
    if settings.callback_port is None:
        if settings.bouncer_callback_url:
            log.warning(
                "BOUNCER_CALLBACK_URL is set but CALLBACK_PORT is not: this process serves no callbacks",
                extra={"action": "callbacks_not_served"},
            )
        return None
    ctx = manager.runtime.ctx

    async def handle(token: str, body: Any) -> CallbackOutcome:
        return await handle_callback(ctx, token, body)

    return Endpoint(settings.callback_host, settings.callback_port, "CALLBACK_PORT", callback_routes(handle))


@contextlib.asynccontextmanager
async def serving_http(manager: QueueManager, liveness: Liveness, extra: Sequence[Endpoint]) -> AsyncIterator[None]:
    """The workers' listener: the operations routes (with METRICS_PORT set) and any `extra` endpoints."""
    endpoints = list(extra)
    if manager.settings.metrics_port is not None:
        endpoints.insert(0, ops_endpoint(manager, liveness))
    callbacks = callback_endpoint(manager)
    if callbacks is not None:
        endpoints.append(callbacks)
    async with serving(endpoints):
        yield


@contextlib.asynccontextmanager
async def refreshing_metrics(manager: QueueManager) -> AsyncIterator[None]:
    """With METRICS_PORT set, refresh the gauges every METRICS_REFRESH_SECONDS."""
    settings = manager.settings
    if settings.metrics_port is None:
        yield
        return
    async with every(settings.metrics_refresh_seconds, lambda: refresh_metrics(manager), "metrics"):
        yield


async def refresh_metrics(manager: QueueManager) -> None:
    """Refresh the gauges once; a failed refresh (Redis or the database away) is logged, the next one tries again."""
    try:
        await manager.refresh_metrics()
    except Exception as exc:
        log.warning("metrics refresh failed: %s", exc, extra={"action": "metrics_refresh_failed"})
