"""Stage 2, submit: the create-batch job sends one pending batch to Bouncer.

Order of checks, cheapest and least wasteful first: the batch's state in the ledger, its request not cancelled
(pipeline/cancel.py), the credits gate, a free batch slot (MAX_CONCURRENT_BATCHES), a look at the shared rate
limit, the addresses, the rate-limit token, then the atomic slot claim and the paid call. A job that finds the
slots full, or the credits out, parks until a completing batch or the credits' return wakes it
(queueing/waiters.py).

Never paying twice: the batch is marked `submitting` before the call. If the call fails in a way that proves
Bouncer never saw it (connection refused, the request not completely written, an error status), the mark is
undone and the job may retry. If Bouncer may have created the batch (a lost response, a crash mid-call), the
batch stays `submitting`: Bouncer has no idempotency key and no list of batches. With a callback URL
(BOUNCER_CALLBACK_URL), each create carries a secret callback URL (pipeline/callbacks.py), and the job waits for
Bouncer's callback, which records the batch's id and resumes the pipeline, up to CALLBACK_WAIT_SECONDS. Without
one (or when no callback comes), the batch is dead-lettered as SubmissionOutcomeUnknown, and only an operator can
tell whether to submit again (`bouncer-queue dlq replay ID --force`).

A 402 proves Bouncer created nothing: the batch goes back to pending, the credits gate closes (holding every
submission), and the job waits for the gate, which the health check reopens after a top-up; nothing is sent twice.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, NoReturn

from bouncer_queue.bouncer import (
    AuthError,
    BouncerAPIError,
    BouncerError,
    BouncerUnavailable,
    Forbidden,
    InsufficientCredits,
    RateLimited,
)
from bouncer_queue.bouncer.schemas import BatchBody, BatchInfo
from bouncer_queue.domain import BatchState
from bouncer_queue.pipeline import jobs
from bouncer_queue.pipeline.callbacks import CallbackSecret, new_secret
from bouncer_queue.pipeline.cancel import finish_at_bouncer, request_cancelled
from bouncer_queue.pipeline.context import StageContext
from bouncer_queue.pipeline.outcomes import Defer, PermanentFailure
from bouncer_queue.storage.ratelimit import Decision
from bouncer_queue.storage.records import BatchRecord
from bouncer_queue.storage.repository import ClaimResult

log = logging.getLogger(__name__)

_ALREADY_AT_BOUNCER = {BatchState.QUEUED, BatchState.PROCESSING, BatchState.COMPLETED}
#: How often a create-batch job waiting for Bouncer's callback looks at its batch again. The callback itself
#: starts the status check, so this only ends the waiting job once the batch has moved on.
_CALLBACK_LOOK_MS = 600_000
_UNKNOWN_MESSAGE = (
    "a create call for this batch got no answer (lost response, or its worker stopped mid-call){callback}; "
    "Bouncer may have created and charged it, so it is not resubmitted automatically. Check your Bouncer account "
    "for a batch of this size created at that time, then `dlq replay ID --force` only if there is none."
)


async def load_batch(ctx: StageContext, data: Mapping[str, Any]) -> BatchRecord:
    """The job's batch from the ledger; a job whose batch is gone cannot be done."""
    batch_id = int(data["batch_id"])
    batch = await ctx.repo.get_batch(batch_id)
    if batch is None:
        raise PermanentFailure("BatchNotFound", f"batch {batch_id} is not in the database")
    return batch


def event(action: str, batch: BatchRecord, **fields: Any) -> dict[str, Any]:
    """The `extra` of a stage log line: every stage event carries its request and batch ids."""
    return {"action": action, "request_id": batch.request_id, "batch_id": batch.id, **fields}


async def create_batch(ctx: StageContext, data: Mapping[str, Any]) -> None:
    # A freed slot earns nothing until this call reaches Bouncer: downloads in this process wait meanwhile.
    async with ctx.precedence.urgent():
        await _create_batch(ctx, data)


async def _create_batch(ctx: StageContext, data: Mapping[str, Any]) -> None:
    batch = await load_batch(ctx, data)
    if batch.status in _ALREADY_AT_BOUNCER:
        # A redelivered job: the batch was created; make sure it is being watched, and stop.
        await ctx.enqueuer.enqueue(jobs.check_status(batch.id, batch.request_id, batch.priority, 0, batch.retries))
        return
    if batch.status == BatchState.SUBMITTING:
        _await_unknown_outcome(ctx, batch)
    if batch.status != BatchState.PENDING:
        return
    if await request_cancelled(ctx, batch.request_id):
        # Cancelled after this job was queued (or a dead letter of it replayed): never send it.
        await ctx.repo.cancel_unsent_batches(batch.request_id)
        return
    secret = new_secret() if ctx.policy.callback_base_url else None
    body, token = await _take_turn(ctx, batch, secret)
    await _submit(ctx, batch, body, secret, token)


def _await_unknown_outcome(ctx: StageContext, batch: BatchRecord) -> NoReturn:
    """A `submitting` batch: wait out a call that may still run, then for Bouncer's callback, then give up."""
    waited_ms = _since_claim_ms(ctx, batch)
    if waited_ms < ctx.policy.submit_grace_ms:
        # After a Redis loss this job may be a copy of one whose create call is under way right now.
        raise Defer(ctx.policy.submit_grace_ms - waited_ms, "a create call for this batch may still be under way")
    callback_left_ms = ctx.policy.submit_grace_ms + ctx.policy.callback_wait_ms - waited_ms
    if ctx.policy.callback_base_url and callback_left_ms > 0:
        raise Defer(min(callback_left_ms, _CALLBACK_LOOK_MS), "create answer lost; waiting for Bouncer's callback")
    callback = ", and no Bouncer callback came in time" if ctx.policy.callback_base_url else ""
    raise PermanentFailure("SubmissionOutcomeUnknown", _UNKNOWN_MESSAGE.format(callback=callback))


def _since_claim_ms(ctx: StageContext, batch: BatchRecord) -> int:
    """How long ago the batch's create call was claimed (its `updated_at`)."""
    if batch.updated_at is None:
        return 1 << 62
    return max(0, int((ctx.clock() - batch.updated_at.timestamp()) * 1000))


async def _take_turn(
    ctx: StageContext, batch: BatchRecord, secret: CallbackSecret | None
) -> tuple[BatchBody, Decision]:
    """Defer unless credits, a batch slot and a rate-limit token are all there; then claim the slot."""
    # Read before the gate and the slots are looked at, so that credits coming back or a slot freed after that
    # look wake this job (queueing/waiters.py).
    ticket = await ctx.enqueuer.slot_wakeups(jobs.EMAIL_VERIFICATION)
    if await ctx.credits_gate.is_closed():
        raise Defer(ctx.policy.credits_wait_ms, "Bouncer credits are exhausted", slot_ticket=ticket)
    if await ctx.repo.in_flight_count() >= ctx.policy.max_in_flight:
        raise _wait_for_slot(ctx, ticket)
    # Asked before the addresses are read, so that a deferral for want of a token reads nothing...
    hint = await ctx.limiter.peek(["batch", "create"])
    if not hint.allowed:
        raise Defer(hint.wait_ms, "rate limit")
    body = BatchBody.of(await ctx.repo.batch_emails(batch.id))  # the addresses as objects go at once
    # ...but the token itself is taken as late as possible: Bouncer counts a request when it arrives, so a token
    # taken before reading 10,000 addresses could leave our window while the request still counts in Bouncer's.
    decision = await ctx.limiter.acquire(["batch", "create"], "batch_create")
    if not decision.allowed:
        raise Defer(decision.wait_ms, "rate limit")
    # The claim comes last so that `submitting` means "the call is about to start or under way": nothing that
    # can fail without reaching Bouncer sits between it and the call.
    digest = secret.digest if secret is not None else None
    claim = await ctx.repo.try_claim_submission(batch.id, ctx.policy.max_in_flight, digest)
    if claim != ClaimResult.CLAIMED:
        # No call goes, so the token goes back: several woken jobs can pass the slot count above together, and
        # every one but the claimant would otherwise spend a create from the budget for a whole window.
        await ctx.limiter.refund(decision)
    if claim == ClaimResult.FULL:
        raise _wait_for_slot(ctx, ticket)
    if claim == ClaimResult.NOT_PENDING:
        raise Defer(0, "batch changed state; looking again")
    return body, decision


def _wait_for_slot(ctx: StageContext, ticket: int) -> Defer:
    # Woken by the next batch that frees a slot; the delay is only the fallback timer.
    return Defer(ctx.policy.slot_wait_ms, "all batch slots are in flight", slot_ticket=ticket)


async def _submit(
    ctx: StageContext, batch: BatchRecord, body: BatchBody, secret: CallbackSecret | None, token: Decision
) -> None:
    """The paid call; every outcome is recorded so that the batch can never be created twice."""
    callback_url = secret.url(ctx.policy.callback_base_url) if secret and ctx.policy.callback_base_url else None
    # Names the process that makes the paid call, for whoever must judge an unknown outcome later.
    log.info("creating the batch at Bouncer", extra=event("batch_create_started", batch, quantity=body.count))
    sent_at = ctx.clock()
    try:
        info = await _call(ctx, body, callback_url, token)
    except BouncerUnavailable as exc:
        if exc.request_sent:
            _answer_lost(ctx, batch, exc)
        await ctx.repo.release_submission(batch.id, str(exc))
        raise
    except RateLimited as exc:
        await ctx.repo.release_submission(batch.id, str(exc))
        raise Defer(ctx.policy.rate_limited_wait_ms, "Bouncer answered 429") from exc
    except InsufficientCredits as exc:
        # Parked like the jobs the closed gate holds back, so the top-up wakes it (read before the gate closes).
        ticket = await ctx.enqueuer.slot_wakeups(jobs.EMAIL_VERIFICATION)
        await ctx.repo.release_submission(batch.id, str(exc))
        await ctx.credits_gate.close(str(exc))
        log.warning("Bouncer credits ran out; submissions wait for a top-up", extra=event("credits_exhausted", batch))
        raise Defer(ctx.policy.credits_wait_ms, "Bouncer credits are exhausted", slot_ticket=ticket) from exc
    except (AuthError, Forbidden) as exc:
        # Bouncer refused the key, not the batch: it goes back to pending, and the dispatcher closes the auth gate.
        await ctx.repo.release_submission(batch.id, str(exc))
        raise
    except BouncerAPIError as exc:
        await ctx.repo.release_submission(batch.id, str(exc))
        if exc.retryable:
            raise
        raise PermanentFailure(type(exc).__name__, str(exc)) from exc
    await _record(ctx, batch, info, body.count, sent_at)


async def _call(ctx: StageContext, body: BatchBody, callback_url: str | None, token: Decision) -> BatchInfo:
    try:
        return await ctx.bouncer.create_batch(body, callback_url=callback_url)
    finally:
        await ctx.limiter.answered(token)  # counted from its answer on; never raises (storage/ratelimit.py)


def _answer_lost(ctx: StageContext, batch: BatchRecord, exc: BouncerUnavailable) -> NoReturn:
    """The create call may have reached Bouncer: keep the batch `submitting`; wait for a callback, or give up."""
    if ctx.policy.callback_base_url:
        log.warning(
            "no answer to the create call; waiting for Bouncer's callback: %s",
            exc,
            extra=event("create_answer_lost", batch),
        )
        raise Defer(min(ctx.policy.callback_wait_ms, _CALLBACK_LOOK_MS), "create answer lost") from exc
    raise PermanentFailure("SubmissionOutcomeUnknown", f"no answer to the create call: {exc}") from exc


async def _record(ctx: StageContext, batch: BatchRecord, info: BatchInfo, sent: int, sent_at: float) -> None:
    """Store Bouncer's answer and start polling; a failure here is logged with Bouncer's id for an operator."""
    state = BatchState.PROCESSING if info.status == "processing" else BatchState.QUEUED
    try:
        # A must_land write (storage/transactions.py): it waits out a database that does not answer.
        await ctx.repo.record_batch_submitted(
            batch.id, info.batch_id, info.quantity or sent, info.duplicates or 0, state
        )
    except Exception as exc:
        # Paid for, but not in the ledger: the batch stays `submitting` (never resubmitted), and this line is
        # where an operator finds Bouncer's id to reconcile it.
        log.critical(
            "Bouncer created batch %s but it could not be recorded: %s",
            info.batch_id,
            exc,
            extra=event("batch_not_recorded", batch, bouncer_batch_id=info.batch_id),
        )
        raise PermanentFailure("SubmissionNotRecorded", f"Bouncer batch {info.batch_id} was created: {exc}") from exc
    log.info(
        "batch submitted to Bouncer",
        extra=event("batch_submitted", batch, bouncer_batch_id=info.batch_id, quantity=sent),
    )
    if await request_cancelled(ctx, batch.request_id):
        # The request was cancelled while this create call was under way: stop the batch at once.
        submitted = replace(batch, bouncer_batch_id=info.batch_id)
        with contextlib.suppress(BouncerError):  # best effort: the batch still completes and is stored
            await finish_at_bouncer(ctx, submitted)
    # The first poll comes a floor after the call started, not after this bookkeeping: the batch's slot is held
    # until a poll sees it done, so every ms added here is a ms the slot idles.
    first_poll_ms = max(0, ctx.policy.poll_min_ms - int((ctx.clock() - sent_at) * 1000))
    await ctx.enqueuer.enqueue(
        jobs.check_status(batch.id, batch.request_id, batch.priority, first_poll_ms, batch.retries)
    )
