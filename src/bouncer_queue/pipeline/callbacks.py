"""Bouncer callbacks: a secret callback URL for each create call, and what a POST to it does.

With BOUNCER_CALLBACK_URL set, the submit stage claims a batch with a fresh random token and sends
`?callback=<BOUNCER_CALLBACK_URL>/bouncer/callback/<token>`; only the token's SHA-256 digest is stored (with the
claim), and the token is never logged. Bouncer POSTs the batch's final status object (`batchId`, `status`,
counts) to that URL when the batch finishes. `handle_callback` then:

- for a token no batch holds (unknown, already used, or from an earlier submission): NOT_FOUND, nothing changes;
- for a batch still `submitting` (its create answer was lost, or its worker died mid-call): records Bouncer's
  batch id from the body, so the pipeline polls and downloads it as usual; a lost answer then costs nothing;
- for any batch at Bouncer: wakes its status check now, instead of at the next poll.

Each token works once: the first callback clears it. The HTTP side is `ops/callback_route.py`.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bouncer_queue.domain import BatchState
from bouncer_queue.pipeline import jobs
from bouncer_queue.pipeline.context import StageContext
from bouncer_queue.storage.records import BatchRecord, SubmittedBatch

log = logging.getLogger(__name__)

#: The route under BOUNCER_CALLBACK_URL; the token is the last path segment.
CALLBACK_PATH = "/bouncer/callback"

_AT_BOUNCER = (BatchState.QUEUED, BatchState.PROCESSING, BatchState.COMPLETED)


class CallbackOutcome(StrEnum):
    """What a callback did; the route maps it to an HTTP status."""

    RESOLVED = "resolved"  #: a `submitting` batch learnt its Bouncer id, and its status check runs now
    WOKEN = "woken"  #: a batch already at Bouncer has its status check run now
    IGNORED = "ignored"  #: the token was good, but the batch needs nothing (downloaded, dead, failed)
    NOT_FOUND = "not_found"  #: no batch holds this token (unknown or reused): nothing changed
    INVALID = "invalid"  #: the body is not a Bouncer batch object: nothing changed


@dataclass(frozen=True, repr=False)
class CallbackSecret:
    """A submission's callback token (only ever in the URL) and its digest (stored with the claim)."""

    token: str

    @property
    def digest(self) -> str:
        return token_digest(self.token)

    def url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}{CALLBACK_PATH}/{self.token}"


def new_secret() -> CallbackSecret:
    """A fresh, unguessable token (256 bits) for one create call."""
    return CallbackSecret(secrets.token_urlsafe(32))


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def handle_callback(ctx: StageContext, token: str, body: Any) -> CallbackOutcome:
    """Apply one callback POST (see the module docstring)."""
    answer = _answer(body)
    if answer is None:
        return CallbackOutcome.INVALID
    batch = await ctx.repo.take_callback(token_digest(token), answer)
    if batch is None:
        log.warning("callback with an unknown or used token refused", extra={"action": "callback_refused"})
        return CallbackOutcome.NOT_FOUND
    resolved = batch.status == BatchState.SUBMITTING
    if not resolved and batch.status not in _AT_BOUNCER:
        return CallbackOutcome.IGNORED
    await _wake_status_check(ctx, batch)
    action = "callback_resolved" if resolved else "callback_woke"
    fields = {"action": action, "request_id": batch.request_id, "batch_id": batch.id}
    log.info("Bouncer callback for batch %s", answer.bouncer_batch_id, extra=fields)
    return CallbackOutcome.RESOLVED if resolved else CallbackOutcome.WOKEN


async def _wake_status_check(ctx: StageContext, batch: BatchRecord) -> None:
    """Run the batch's status check now: add it (a no-op when it exists), and promote it if it is waiting."""
    spec = jobs.check_status(batch.id, batch.request_id, batch.priority, 0, batch.retries)
    await ctx.enqueuer.enqueue(spec)
    assert spec.job_id is not None
    await ctx.enqueuer.promote_job(spec.queue, spec.job_id)


def _answer(body: Any) -> SubmittedBatch | None:
    """Bouncer's batch object as a create answer; None unless it carries a batch id."""
    if not isinstance(body, Mapping):
        return None
    batch_id = body.get("batchId")
    if not isinstance(batch_id, str) or not batch_id or len(batch_id) > 64:
        return None
    state = BatchState.PROCESSING if body.get("status") == "processing" else BatchState.QUEUED
    quantity = _count(body.get("quantity"))
    return SubmittedBatch(batch_id, quantity or None, _count(body.get("duplicates")), state)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
