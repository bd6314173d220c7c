"""Stage 4, download and store: the download-batch-results job fetches a completed batch's results.

Every result lands in Bouncer_Results, and the batch's addresses are marked completed (or failed, when Bouncer
returned nothing for one) in the same transaction, so a crash leaves either all of it or none. Running the job
twice stores the same rows (an upsert), so a redelivered job costs one download and no harm.
When this was the request's last open batch, the request is marked finished. The body is decoded once into rows
that keep each result's text as Bouncer sent it (bouncer/schemas.result_rows), stored as is.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bouncer_queue.bouncer import BatchStateError, RateLimited
from bouncer_queue.domain import BatchState
from bouncer_queue.pipeline.context import StageContext
from bouncer_queue.pipeline.outcomes import Defer
from bouncer_queue.pipeline.submit import event, load_batch

log = logging.getLogger(__name__)


def _between_chunks(ctx: StageContext) -> Callable[[], Awaitable[None]]:
    """Between chunks of decoded rows: one turn of the event loop, and none while a create is under way."""

    async def pause() -> None:
        await asyncio.sleep(0)
        await ctx.precedence.after_urgent()

    return pause


async def download_batch_results(ctx: StageContext, data: Mapping[str, Any]) -> None:
    batch = await load_batch(ctx, data)
    if batch.status != BatchState.COMPLETED or batch.bouncer_batch_id is None:
        return
    decision = await ctx.limiter.acquire(["batch"], "batch_download")
    if not decision.allowed:
        raise Defer(decision.wait_ms, "rate limit")
    # Decoding and storing are the CPU-heavy steps: a create under way in this process goes first, also when it
    # starts while this download decodes.
    await ctx.precedence.after_urgent()
    try:
        results = await ctx.bouncer.download(batch.bouncer_batch_id, pause=_between_chunks(ctx))
    except RateLimited as exc:
        raise Defer(ctx.policy.rate_limited_wait_ms, "Bouncer answered 429") from exc
    except BatchStateError as exc:
        raise Defer(ctx.policy.poll_interval_ms, "results not ready yet") from exc
    finally:
        await ctx.limiter.answered(decision)  # counted from its answer on (storage/ratelimit.py)
    await ctx.precedence.after_urgent()
    totals = await ctx.repo.store_results(batch.id, results)
    await ctx.repo.finish_requests(batch.request_id)
    for status, count in Counter(r.status for r in results).items():
        ctx.observer.emails_verified(status, count)
    log.info(
        "batch results stored: %d results, %d addresses without one",
        totals.stored,
        totals.emails_missing,
        extra=event("batch_downloaded", batch, stored=totals.stored, missing=totals.emails_missing),
    )
