"""Running the workers: every queue's worker, the job schedulers, the metrics endpoint, until told to stop.

`run_workers(manager, stop)` is what `bouncer-queue workers` and `bouncer-queue verify` run. On start it also
offers the ledger's unfinished batches to the queues (pipeline/recover.py), so a worker started after Redis
lost its data picks the work up again. Several processes, on one machine or many, may run this at once: they
share the queues, the batch slots (in the database) and the rate-limit budget (in the database).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from bouncer_queue.pipeline.dispatch import Dispatcher
from bouncer_queue.pipeline.housekeeping import Housekeeping
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
    rt = manager.runtime
    await rt.admin.upsert_schedulers(
        int(settings.health_check_interval_seconds * 1000), int(settings.cleanup_interval_seconds * 1000)
    )
    await manager.recover()
    pool = build_pool(manager)
    server = rt.metrics.serve(settings.metrics_port) if settings.metrics_port is not None else None
    await pool.start()
    log.info("workers started", extra={"action": "workers_started"})
    try:
        await stop.wait()
    finally:
        log.info("stopping workers", extra={"action": "workers_stopping"})
        await pool.close(settings.shutdown_grace_seconds)
        if server is not None:
            server.close()
        log.info("workers stopped", extra={"action": "workers_stopped"})
