"""Job name -> stage: the one table the workers use to run a job, and the dead-letter hook they call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bouncer_queue.pipeline import jobs
from bouncer_queue.pipeline.context import StageContext
from bouncer_queue.pipeline.deadletter import dead_letter
from bouncer_queue.pipeline.download import download_batch_results
from bouncer_queue.pipeline.housekeeping import Housekeeping
from bouncer_queue.pipeline.outcomes import PermanentFailure
from bouncer_queue.pipeline.poll import check_batch_status
from bouncer_queue.pipeline.retry import retry_failed_batch
from bouncer_queue.pipeline.submit import create_batch

Handler = Callable[[Mapping[str, Any]], Awaitable[Any]]


class Dispatcher:
    """Runs a job by its name, and dead-letters the ones that fail for good."""

    def __init__(self, ctx: StageContext, housekeeping: Housekeeping) -> None:
        self._ctx = ctx
        self._handlers: dict[str, Handler] = {
            jobs.CREATE_BATCH: lambda d: create_batch(ctx, d),
            jobs.RETRY_FAILED_BATCH: lambda d: retry_failed_batch(ctx, d),
            jobs.CHECK_BATCH_STATUS: lambda d: check_batch_status(ctx, d),
            jobs.DOWNLOAD_BATCH_RESULTS: lambda d: download_batch_results(ctx, d),
            jobs.CLEANUP_RATE_LIMITS: housekeeping.cleanup_rate_limits,
            jobs.HEALTH_CHECK: housekeeping.run_health_check,
        }

    async def run(self, job_name: str, data: Mapping[str, Any]) -> Any:
        handler = self._handlers.get(job_name)
        if handler is None:
            raise PermanentFailure("UnknownJob", f"no stage handles jobs named {job_name!r}")
        return await handler(data)

    async def on_final_failure(
        self, queue: str, job_name: str, data: Mapping[str, Any], error: BaseException, attempts: int
    ) -> None:
        await dead_letter(self._ctx, queue, job_name, data, error, attempts)
