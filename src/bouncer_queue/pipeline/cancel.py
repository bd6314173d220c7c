"""Cancelling a request: what is not yet at Bouncer is never sent, and what is there is finished early.

Not a stage of its own: `cancel_request` runs in the caller (the CLI's `cancel`, the HTTP API), through
QueueManager.cancel_request. Order matters: the request is marked cancelled first, so a create-batch job that
runs meanwhile sees it and sends nothing (submit.py checks); then its unsent batches are cancelled in the
ledger; then each batch already at Bouncer gets Bouncer's finish call, which stops it and refunds the credits
of the addresses not yet verified. Those batches then complete as usual: their verified results are downloaded
and stored, so the export shows what was verified and the rest as cancelled or unverified.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from bouncer_queue.bouncer import BatchStateError, BouncerError
from bouncer_queue.domain import BatchState, RequestState
from bouncer_queue.pipeline.context import StageContext
from bouncer_queue.storage.records import BatchRecord

log = logging.getLogger(__name__)

#: How many times a finish call waits for a rate-limit token before giving up on that batch.
_TOKEN_TRIES = 20
_AT_BOUNCER = (BatchState.QUEUED, BatchState.PROCESSING)


@dataclass(frozen=True)
class CancelResult:
    """What cancelling a request did; `found` is False for an unknown request id (nothing else is set)."""

    request_id: str
    found: bool = True
    batches_cancelled: int = 0  #: never sent, and now never will be
    batches_finished: int = 0  #: at Bouncer, finished early (unused credits come back)
    errors: tuple[str, ...] = field(default_factory=tuple)  #: batches whose finish call failed, and why


async def cancel_request(ctx: StageContext, request_id: str) -> CancelResult:
    """Cancel `request_id`: unsent batches are never sent; batches at Bouncer are finished. Safe to repeat."""
    if await ctx.repo.get_request(request_id) is None:
        return CancelResult(request_id, found=False)
    await ctx.repo.set_request_state(request_id, RequestState.CANCELLED)
    cancelled = await ctx.repo.cancel_unsent_batches(request_id)
    finished, errors = 0, []
    for batch in await ctx.repo.batches_in_states(_AT_BOUNCER, request_id):
        try:
            finished += await finish_at_bouncer(ctx, batch)
        except BouncerError as exc:
            errors.append(f"batch {batch.id}: {exc}")
    log.info(
        "request cancelled",
        extra={"action": "request_cancelled", "request_id": request_id, "cancelled": cancelled, "finished": finished},
    )
    return CancelResult(request_id, True, cancelled, finished, tuple(errors))


async def finish_at_bouncer(ctx: StageContext, batch: BatchRecord) -> bool:
    """Bouncer's finish call for a batch it is running; False when it had already completed."""
    if batch.bouncer_batch_id is None:
        return False
    for _ in range(_TOKEN_TRIES):
        decision = await ctx.limiter.acquire(["batch"], "batch_finish")
        if decision.allowed:
            break
        await asyncio.sleep(decision.wait_ms / 1000)  # a user's command, not a worker's slot: waiting is fine
    try:
        await ctx.bouncer.finish_batch(batch.bouncer_batch_id)
    except BatchStateError:
        return False  # "batch has to be running to finish": it completed meanwhile
    finally:
        await ctx.limiter.answered(decision)  # counted from its answer on (storage/ratelimit.py)
    log.info("batch finished early", extra={"action": "batch_finished_early", "batch_id": batch.id})
    return True


async def request_cancelled(ctx: StageContext, request_id: str) -> bool:
    """True when the request was cancelled: its batches must not be sent."""
    request = await ctx.repo.get_request(request_id)
    return request is not None and request.status == RequestState.CANCELLED
