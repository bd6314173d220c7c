"""Stage 5, retry: the retry-failed-batch job re-submits a batch Bouncer failed, up to MAX_BATCH_RETRIES times.

Past the limit the batch is dead-lettered. A re-submission is a new paid batch, which is why it only follows
a failure Bouncer itself reported, never a lost response (see submit.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bouncer_queue.domain import BatchState
from bouncer_queue.pipeline import jobs
from bouncer_queue.pipeline.context import StageContext
from bouncer_queue.pipeline.outcomes import PermanentFailure
from bouncer_queue.pipeline.submit import event, load_batch

log = logging.getLogger(__name__)


async def retry_failed_batch(ctx: StageContext, data: Mapping[str, Any]) -> None:
    batch = await load_batch(ctx, data)
    if batch.status != BatchState.FAILED:
        return
    if batch.retries >= ctx.policy.max_batch_retries:
        raise PermanentFailure(
            "BatchRetriesExhausted",
            f"Bouncer failed this batch {batch.retries + 1} times; last error: {batch.last_error}",
        )
    await ctx.repo.reset_batch_for_retry(batch.id)
    log.info("batch resubmitted after a failure", extra=event("batch_retry", batch, retry=batch.retries + 1))
    await ctx.enqueuer.enqueue(jobs.create_batch(batch.id, batch.request_id, batch.priority, 0, batch.retries + 1))
