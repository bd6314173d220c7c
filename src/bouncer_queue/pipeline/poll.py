"""Stage 3, poll: the check-batch-status job asks Bouncer how a batch is doing.

It never sleeps inside the job: while the batch runs, the job defers itself until the batch is likely done
(pipeline/pacing.py; no attempt spent, the worker slot is free meanwhile). Completed: record it, free the slot
(waking the next create-batch job parked for one) and enqueue the download. A status Bouncer does not
document, or a batch Bouncer no longer knows, is a failed batch (its slot freed too): retry-failed-batch decides
whether to submit it again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bouncer_queue.bouncer import BatchInfo, BatchNotFound, RateLimited
from bouncer_queue.domain import BatchState
from bouncer_queue.pipeline import jobs
from bouncer_queue.pipeline.context import StageContext
from bouncer_queue.pipeline.outcomes import Defer
from bouncer_queue.pipeline.pacing import Progress, next_poll_ms
from bouncer_queue.pipeline.submit import event, load_batch
from bouncer_queue.storage.records import BatchRecord

log = logging.getLogger(__name__)

_RUNNING = {"queued": BatchState.QUEUED, "processing": BatchState.PROCESSING, "running": BatchState.PROCESSING}
_RUNNING_UNDOCUMENTED = {"pending", "created", "started"}
#: A `submitting` batch whose Bouncer id is known was created: it is watched like a queued one.
_AT_BOUNCER = (BatchState.SUBMITTING, BatchState.QUEUED, BatchState.PROCESSING)


async def check_batch_status(ctx: StageContext, data: Mapping[str, Any]) -> None:
    # A poll that finds its batch done frees a slot: downloads in this process wait for it (pipeline/precedence.py).
    async with ctx.precedence.urgent():
        await _check_batch_status(ctx, data)


async def _check_batch_status(ctx: StageContext, data: Mapping[str, Any]) -> None:
    batch = await load_batch(ctx, data)
    if batch.status == BatchState.COMPLETED:
        # A redelivered job: the last run may have stopped between freeing the slot and waking a waiter.
        await ctx.enqueuer.enqueue(jobs.download(batch.id, batch.request_id, batch.priority, batch.retries))
        await _slot_freed(ctx)
        return
    if batch.status not in _AT_BOUNCER or batch.bouncer_batch_id is None:
        return
    decision = await ctx.limiter.acquire(["batch"], "batch_status")
    if not decision.allowed:
        raise Defer(decision.wait_ms, "rate limit")
    try:
        info = await ctx.bouncer.get_batch(batch.bouncer_batch_id, with_stats=True)
    except RateLimited as exc:
        raise Defer(ctx.policy.rate_limited_wait_ms, "Bouncer answered 429") from exc
    except BatchNotFound as exc:
        await _failed(ctx, batch, str(exc))
        return
    finally:
        await ctx.limiter.answered(decision)  # counted from its answer on (storage/ratelimit.py)
    status = (info.status or "").lower()
    if status == "completed":
        await ctx.repo.record_batch_completed(batch.id, info.credits)
        log.info("batch completed at Bouncer", extra=event("batch_completed", batch, credits=info.credits))
        # The slot's next create first: it starts before this download, which then yields to it.
        await _slot_freed(ctx)
        await ctx.enqueuer.enqueue(jobs.download(batch.id, batch.request_id, batch.priority, batch.retries))
        return
    if status in _RUNNING or status in _RUNNING_UNDOCUMENTED:
        running = _RUNNING.get(status, BatchState.QUEUED if batch.status == BatchState.SUBMITTING else batch.status)
        await ctx.repo.record_batch_progress(batch.id, running, info.processed)
        raise Defer(_next_poll_ms(ctx, batch, info), f"batch {status}")
    await _failed(ctx, batch, f"Bouncer status {status!r}")


def _next_poll_ms(ctx: StageContext, batch: BatchRecord, info: BatchInfo) -> int:
    """When the batch is likely done (pipeline/pacing.py); the last poll's progress is the batch's record."""
    previous = None
    if batch.processed > 0 and batch.updated_at is not None:
        previous = Progress(batch.processed, batch.updated_at.timestamp())
    return next_poll_ms(
        info.quantity or batch.quantity,
        Progress(info.processed or 0, ctx.clock()),
        previous=previous,
        started=info.started,
        submitted=batch.submitted_at,
        floor_ms=ctx.policy.poll_min_ms,
        ceiling_ms=ctx.policy.poll_interval_ms,
    )


async def _slot_freed(ctx: StageContext) -> None:
    """Wake the most urgent create-batch job parked for a slot (by priority, then age), never a job the user
    delayed: its delay holds."""
    await ctx.enqueuer.wake_slot_waiter(jobs.EMAIL_VERIFICATION)


async def _failed(ctx: StageContext, batch: BatchRecord, why: str) -> None:
    await ctx.repo.mark_batch_failed(batch.id, why)
    await _slot_freed(ctx)
    log.warning(
        "batch failed at Bouncer: %s",
        why,
        extra=event("batch_failed", batch),
    )
    await ctx.enqueuer.enqueue(jobs.retry_failed(batch.id, batch.request_id, batch.priority, batch.retries))
