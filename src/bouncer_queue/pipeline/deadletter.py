"""The dead-letter path: a job that failed for good is recorded, its batch marked dead, and kept for replay.

A dead letter lands twice: in Bouncer_Dead_Letter_Queue (the ledger, with its error class and message) and as a
job on the `dead-letter` queue, which no worker consumes, so BullMQ dashboards show it. A request whose last
open batch dies is marked finished. Replaying resets the batch to pending, makes its request active again and
enqueues a fresh create-batch job.

A letter whose create call got no answer (SubmissionOutcomeUnknown) or whose answer could not be recorded
(SubmissionNotRecorded) "may have been charged": Bouncer may hold and bill that batch already. Replaying it
submits and pays again, so it is refused unless forced, with what to check first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bouncer_queue.domain import BatchState, Priority, RequestState
from bouncer_queue.errors import ReplayRefused
from bouncer_queue.pipeline import jobs
from bouncer_queue.pipeline.context import StageContext
from bouncer_queue.pipeline.outcomes import PermanentFailure
from bouncer_queue.pipeline.ports import JobSpec
from bouncer_queue.storage.records import DeadLetter

log = logging.getLogger(__name__)

#: Error classes of dead letters whose batch Bouncer may already have created and charged.
MAY_HAVE_BEEN_CHARGED = frozenset({"SubmissionOutcomeUnknown", "SubmissionNotRecorded"})


def may_have_been_charged(letter: DeadLetter) -> bool:
    return letter.error_class in MAY_HAVE_BEEN_CHARGED


def _refusal(letter: DeadLetter) -> str:
    return (
        f"dead letter {letter.id} (batch {letter.batch_id}) may have been charged: its create call got no usable "
        "answer, so Bouncer may already hold and bill this batch. Check your Bouncer account (the dashboard's "
        f"batches, created around {letter.created_at:%Y-%m-%d %H:%M} UTC, of this batch's size) and your credit "
        "balance; replay with --force only if no such batch exists, or it will be paid twice."
    )


def error_class_of(error: BaseException) -> tuple[str, str]:
    if isinstance(error, PermanentFailure):
        return error.error_class, error.message
    return type(error).__name__, str(error)


async def dead_letter(
    ctx: StageContext, queue: str, job_name: str, data: Mapping[str, Any], error: BaseException, attempts: int
) -> int:
    """Record a job that will not be retried again; returns the dead letter's id."""
    error_class, message = error_class_of(error)
    batch_id = data.get("batch_id")
    request_id = data.get("request_id")
    if isinstance(batch_id, int):
        await ctx.repo.mark_batch_dead(batch_id, error_class, message)
        if request_id is not None:
            await ctx.repo.finish_requests(str(request_id))
    letter_id = await ctx.repo.add_dead_letter(
        queue,
        job_name,
        dict(data),
        error_class,
        message,
        attempts,
        batch_id=batch_id if isinstance(batch_id, int) else None,
        request_id=str(request_id) if request_id is not None else None,
    )
    payload = {"dead_letter_id": letter_id, "queue": queue, "job": job_name, "data": dict(data)}
    payload |= {"error_class": error_class, "message": message, "attempts": attempts}
    await ctx.enqueuer.enqueue(
        JobSpec(jobs.DEAD_LETTER, job_name, payload, Priority.NORMAL, job_id=f"dead-{letter_id}")
    )
    log.error(
        "job dead-lettered: %s: %s",
        error_class,
        message,
        extra={
            "action": "dead_lettered",
            "queue": queue,
            "job": job_name,
            "batch_id": batch_id,
            "request_id": request_id,
            "dead_letter_id": letter_id,
        },
    )
    return letter_id


async def replay(ctx: StageContext, letter_id: int, *, force: bool = False) -> bool:
    """Put a dead letter's batch back in the pipeline; False when it was already replayed or does not exist.

    Raises ReplayRefused for a letter that may have been charged, unless `force`."""
    letter = await ctx.repo.get_dead_letter(letter_id)
    if letter is None or letter.replayed_at is not None:
        return False
    if may_have_been_charged(letter) and not force:
        raise ReplayRefused(_refusal(letter))
    if letter.batch_id is not None:
        batch = await ctx.repo.get_batch(letter.batch_id)
        if batch is not None and batch.status in (BatchState.DEAD, BatchState.FAILED, BatchState.SUBMITTING):
            await ctx.repo.reset_batch_for_retry(batch.id)
            await ctx.repo.set_request_state(batch.request_id, RequestState.ACTIVE)
            await ctx.enqueuer.enqueue(
                jobs.create_batch(batch.id, batch.request_id, batch.priority, 0, batch.retries + 1)
            )
    await ctx.repo.mark_dead_letter_replayed(letter_id)
    log.info("dead letter replayed", extra={"action": "dead_letter_replayed", "dead_letter_id": letter_id})
    return True
