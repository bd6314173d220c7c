"""The repository: every query the system runs, as intent-named async methods over plain records.

`Repository` is the one entry point the pipeline, the health checks and the interfaces see; they get the
dataclasses of storage/records.py back, never an ORM object or a connection. It holds no query of its own and
delegates to one query group per concept, the only modules that build select()/insert()/update():

- ingest.py: requests, stored as pending batches of emails (and a Bouncer_Requests row), found, listed, and
  their progress;
- batches.py: the batch lifecycle after ingest; claims.py: submission slots under an engine-specific lock, so
  MAX_CONCURRENT_BATCHES holds across processes and machines;
- results.py: storing results and exporting a request; dead_letters.py; health.py;
- timeline.py: a request's credits and times across its batches; tokens.py: the HTTP API's hashed tokens;
  webhooks.py: the webhook delivery log.
- credits.py: what requests cost, hold in reserve and spent, and which addresses the result cache answers.

Each public method is one transaction and translates database errors into StorageError, password masked
(transactions.py). Bulk writes go through storage/bulk.py, the engine's fast path.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bouncer_queue.domain import BatchState, RequestState
from bouncer_queue.storage.batches import BatchQueries
from bouncer_queue.storage.claims import ClaimQueries, ClaimResult
from bouncer_queue.storage.credits import CreditQueries, RequestCredits
from bouncer_queue.storage.dead_letters import DeadLetterQueries
from bouncer_queue.storage.health import HealthQueries
from bouncer_queue.storage.ingest import RequestQueries
from bouncer_queue.storage.progress import ProgressQueries
from bouncer_queue.storage.records import (
    ApiToken,
    BatchEmail,
    BatchProgress,
    BatchRecord,
    DeadLetter,
    EmailRow,
    ExportRow,
    HealthMetric,
    RequestInfo,
    RequestProgress,
    RequestRecord,
    RequestTimeline,
    ResultRow,
    StoreTotals,
    SubmittedBatch,
    WebhookDelivery,
)
from bouncer_queue.storage.results import ResultQueries
from bouncer_queue.storage.timeline import TimelineQueries
from bouncer_queue.storage.tokens import TokenQueries
from bouncer_queue.storage.transactions import Database
from bouncer_queue.storage.webhooks import WebhookQueries

__all__ = ["ClaimResult", "Repository", "RequestCredits"]


class Repository:
    """Intent-named queries over the Bouncer_* tables; safe to share between tasks of one process."""

    def __init__(self, engine: AsyncEngine) -> None:
        db = Database(engine)
        self._requests = RequestQueries(db)
        self._batches = BatchQueries(db)
        self._claims = ClaimQueries(db)
        self._results = ResultQueries(db)
        self._dead_letters = DeadLetterQueries(db)
        self._health = HealthQueries(db)
        self._timeline = TimelineQueries(db)
        self._tokens = TokenQueries(db)
        self._webhooks = WebhookQueries(db)
        self._credits = CreditQueries(db)
        self._progress = ProgressQueries(db)

    # Requests

    async def ingest_request(
        self,
        request: RequestInfo,
        chunks: Iterable[Sequence[EmailRow]] | AsyncIterable[Sequence[EmailRow]],
        *,
        on_batch: Callable[[int], Awaitable[None]] | None = None,
        resume: bool = False,
        ahead: bool = True,
    ) -> list[int]:
        """Store a request chunk by chunk, each chunk and its pending batch in a transaction of its own, and
        await `on_batch(batch_id)` after each commit; return the batch ids.

        The request is `ingesting` until its last chunk is stored, then `active` (or `finished`). Chunks are
        consumed one at a time, so a list of any size streams through; an exception from `chunks` propagates
        unchanged and leaves the chunks already stored (resumable with `resume`), except that a request with no
        batch yet is removed whole. An address repeated in a later chunk (compared lower-cased) joins its first
        occurrence, so it is sent once; a batch left empty is not kept. With `ahead`, the next chunk is read
        while one is stored (one chunk more in memory).
        """
        return await self._requests.ingest_request(request, chunks, on_batch=on_batch, resume=resume, ahead=ahead)

    async def request_progress(self, request_id: str) -> RequestProgress:
        """Counts of the request's emails and batches by state."""
        return await self._requests.request_progress(request_id)

    async def batch_progress(self, request_id: str) -> BatchProgress:
        """The request's batches by state, the addresses in its open ones and its credits, without counting its
        addresses: cheap enough for a progress bar (RequestProgress is the exact count)."""
        return await self._progress.batch_progress(request_id)

    async def request_user(self, request_id: str) -> str | None:
        """Who submitted the request, or None for an unknown request."""
        return await self._requests.request_user(request_id)

    async def get_request(self, request_id: str) -> RequestRecord | None:
        """The request's row, or None for an unknown request."""
        return await self._requests.get_request(request_id)

    async def find_request_by_fingerprint(self, fingerprint: str) -> RequestRecord | None:
        """The newest request stored with this content fingerprint, or None."""
        return await self._requests.find_request_by_fingerprint(fingerprint)

    async def find_request_by_idempotency_key(self, key: str) -> RequestRecord | None:
        """The request stored with this idempotency key, or None."""
        return await self._requests.find_request_by_idempotency_key(key)

    async def list_requests(
        self, *, user_id: str | None = None, status: RequestState | None = None, limit: int = 50, offset: int = 0
    ) -> list[RequestRecord]:
        """Requests, newest first, optionally of one user or in one state; `limit`/`offset` page through them."""
        return await self._requests.list_requests(user_id=user_id, status=status, limit=limit, offset=offset)

    async def set_request_state(self, request_id: str, state: RequestState) -> None:
        """Record where the request stands; finished and cancelled also stamp `finished_at`."""
        await self._requests.set_request_state(request_id, state)

    async def finish_requests(self, request_id: str | None = None) -> int:
        """Mark active requests finished once every batch is downloaded or dead: the one given, or all of them.
        Returns how many were marked."""
        return await self._requests.finish_requests(request_id)

    # Batches

    async def get_batch(self, batch_id: int) -> BatchRecord | None:
        """The batch, or None when there is no such id."""
        return await self._batches.get_batch(batch_id)

    async def batch_emails(self, batch_id: int) -> list[BatchEmail]:
        """The batch's addresses with their names, in row order, each address once: what is sent to Bouncer."""
        return await self._batches.batch_emails(batch_id)

    async def try_claim_submission(
        self, batch_id: int, max_in_flight: int, callback_token: str | None = None
    ) -> ClaimResult:
        """Atomically move a pending batch to submitting (attempts + 1) if fewer than `max_in_flight` are in flight,
        storing `callback_token` (the digest of this submission's callback secret; None clears it).

        Atomic across processes and machines: the check and the update run under one database-wide lock.
        PostgreSQL: a transaction-scoped advisory lock (released by commit or a dropped connection, never
        leaked). SQLite: BEGIN IMMEDIATE already holds the single write lock. MariaDB: GET_LOCK, a named
        server lock (session-scoped, so released explicitly and by a dropped connection); the work runs in a
        transaction started after the lock is held, so its snapshot sees every earlier claim.
        """
        return await self._claims.try_claim_submission(batch_id, max_in_flight, callback_token)

    async def release_submission(self, batch_id: int, error: str | None) -> None:
        """Give the slot back: submitting -> pending, because the create request certainly never reached Bouncer."""
        await self._batches.release_submission(batch_id, error)

    async def record_batch_submitted(
        self, batch_id: int, bouncer_batch_id: str, quantity: int, duplicates: int, status: BatchState
    ) -> None:
        """Bouncer accepted the batch: store its id and counts, and mark its emails submitted (only while the
        batch is still `submitting`: a callback may have recorded it first)."""
        answer = SubmittedBatch(bouncer_batch_id, quantity, duplicates, status)
        await self._batches.record_batch_submitted(batch_id, answer)

    async def take_callback(self, token_digest: str, answer: SubmittedBatch | None) -> BatchRecord | None:
        """The batch whose callback token has this digest, as it was; the token is cleared (single use), and a
        batch still `submitting` is recorded with `answer`. None when no batch holds the token."""
        return await self._batches.take_callback(token_digest, answer)

    async def record_batch_progress(self, batch_id: int, status: BatchState, processed: int | None) -> None:
        """Store what a status poll saw; ignored once the batch is downloaded or dead (a late poll changes nothing)."""
        await self._batches.record_batch_progress(batch_id, status, processed)

    async def record_batch_completed(self, batch_id: int, credits_used: int | None) -> None:
        """Bouncer finished the batch; its results are ready to download."""
        await self._batches.record_batch_completed(batch_id, credits_used)

    async def mark_batch_failed(self, batch_id: int, error: str) -> None:
        """Bouncer reported a failure; a retry may follow (`reset_batch_for_retry`)."""
        await self._batches.mark_batch_failed(batch_id, error)

    async def mark_batch_dead(self, batch_id: int, error_class: str, message: str) -> None:
        """Give up on the batch and its emails."""
        await self._batches.mark_batch_dead(batch_id, error_class, message)

    async def reset_batch_for_retry(self, batch_id: int) -> None:
        """A failed or dead batch goes back to pending (retries + 1) with its emails; other states are left alone."""
        await self._batches.reset_batch_for_retry(batch_id)

    async def in_flight_count(self) -> int:
        """How many batches hold a MAX_CONCURRENT_BATCHES slot."""
        return await self._batches.in_flight_count()

    async def batches_in_states(self, states: Iterable[BatchState], request_id: str | None = None) -> list[BatchRecord]:
        """Batches in any of `states` (of one request when `request_id` is given), oldest first."""
        return await self._batches.batches_in_states(states, request_id)

    async def cancel_unsent_batches(self, request_id: str) -> int:
        """The request's batches not at Bouncer (pending, or failed awaiting a retry) become `cancelled`, their
        emails too, so they are never sent; returns how many. In one transaction; safe to repeat."""
        return await self._batches.cancel_unsent_batches(request_id)

    async def oldest_pending_batch_created_at(self) -> datetime | None:
        """When the longest-waiting pending batch was created, or None when none waits."""
        return await self._batches.oldest_pending_batch_created_at()

    # Results and exports

    async def store_results(self, batch_id: int, results: Sequence[ResultRow]) -> StoreTotals:
        """Upsert a batch's results and settle its emails (completed if a result exists, else failed), in ONE
        transaction; the batch becomes downloaded. Idempotent: storing the same results again changes nothing.
        Addresses are matched case-insensitively; result emails are stored lower-cased.
        """
        return await self._results.store_results(batch_id, results)

    def iter_export(self, request_id: str, statuses: Collection[str] | None = None) -> AsyncIterator[ExportRow]:
        """Stream the request's rows in row order, each joined with its result; `statuses` filters on the result
        status (rows without a result only appear when `statuses` is None). Rows are fetched in chunks from a
        server-side cursor, so a million-row export never sits in memory."""
        # Hand out the query group's own generator: re-yielding each row here would cost a step per row.
        return self._results.iter_export(request_id, statuses)

    # Credits

    async def request_credits(self, request_ids: list[str] | None = None) -> list[RequestCredits]:
        """Credits per request (the active ones unless `request_ids` is given): billable, reserved, spent."""
        return await self._credits.request_credits(request_ids)

    async def any_cached(self, since: datetime) -> bool:
        """Whether any result since `since` exists, that the result cache could reuse."""
        return await self._credits.any_cached(since)

    async def cached_keys(self, keys: Sequence[str], since: datetime) -> set[str]:
        """Which of `keys` (lower-cased addresses) have an answer since `since` that the result cache reuses."""
        return await self._credits.cached_keys(keys, since)

    # Dead letters

    async def add_dead_letter(
        self,
        queue: str,
        job_name: str,
        payload: Mapping[str, Any],
        error_class: str,
        message: str,
        attempts: int,
        batch_id: int | None = None,
        request_id: str | None = None,
    ) -> int:
        """Record a job that exhausted its attempts; return the dead letter's id."""
        return await self._dead_letters.add_dead_letter(
            queue, job_name, payload, error_class, message, attempts, batch_id, request_id
        )

    async def list_dead_letters(self, include_replayed: bool = False, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters first; replayed ones only when asked."""
        return await self._dead_letters.list_dead_letters(include_replayed, limit)

    async def get_dead_letter(self, dead_letter_id: int) -> DeadLetter | None:
        """The dead letter, or None."""
        return await self._dead_letters.get_dead_letter(dead_letter_id)

    async def mark_dead_letter_replayed(self, dead_letter_id: int) -> None:
        """Note that the job was enqueued again."""
        await self._dead_letters.mark_dead_letter_replayed(dead_letter_id)

    # Health

    async def record_health_metric(self, metric: HealthMetric, numbers: Mapping[str, float | None]) -> int:
        """Store one health check; `numbers` fills the chartable columns (HEALTH_NUMBER_COLUMNS). Return its id."""
        return await self._health.record_health_metric(metric, numbers)

    async def recent_health_metrics(self, limit: int = 20) -> list[HealthMetric]:
        """The newest health checks first."""
        return await self._health.recent_health_metrics(limit)

    async def latest_credits(self) -> tuple[int, datetime] | None:
        """Credits left as the newest health check that asked Bouncer recorded them, and when; None if none did."""
        return await self._health.latest_credits()

    async def prune_health_metrics(self, older_than: datetime) -> int:
        """Delete health checks recorded before `older_than`; return how many."""
        return await self._health.prune_health_metrics(older_than)

    async def ping(self) -> float:
        """Round-trip one trivial query; return the latency in seconds."""
        return await self._health.ping()

    # Request timelines

    async def request_timeline(self, request_id: str) -> RequestTimeline:
        """Credits spent on the request's batches, when the first was submitted and the last settled."""
        return await self._timeline.request_timeline(request_id)

    async def request_batches(self, request_id: str, limit: int = 500) -> list[BatchRecord]:
        """The request's batches, oldest first."""
        return await self._timeline.request_batches(request_id, limit)

    # API tokens

    async def add_token(self, name: str, token_hash: str, prefix: str, scopes: Sequence[str]) -> ApiToken:
        """Store a new token by its hash; the token itself is never stored."""
        return await self._tokens.add_token(name, token_hash, prefix, scopes)

    async def find_token(self, token_hash: str) -> ApiToken | None:
        """The live token with this hash, or None (unknown or revoked)."""
        return await self._tokens.find_token(token_hash)

    async def list_tokens(self) -> list[ApiToken]:
        """Every token, revoked ones too, oldest first."""
        return await self._tokens.list_tokens()

    async def revoke_token(self, name_or_id: str) -> int:
        """Revoke the live tokens of this name or id; how many."""
        return await self._tokens.revoke_token(name_or_id)

    # Webhooks

    async def requests_awaiting_webhook(self, limit: int = 100, offset: int = 0) -> list[str]:
        """Ids of requests with a webhook URL and no message yet (cancelled ones left out), oldest first."""
        return await self._webhooks.requests_awaiting_webhook(limit, offset)

    async def add_webhook_delivery(
        self, message_id: str, request_id: str, event: str, url: str, payload: Mapping[str, Any]
    ) -> bool:
        """Record a webhook message, due now; False when one with this id exists."""
        return await self._webhooks.add_webhook_delivery(message_id, request_id, event, url, payload)

    async def claim_due_webhooks(self, lease: timedelta, limit: int = 20) -> list[WebhookDelivery]:
        """Messages due for an attempt, leased to the caller for `lease`."""
        return await self._webhooks.claim_due_webhooks(lease, limit)

    async def record_webhook_attempt(
        self,
        delivery_id: int,
        *,
        delivered: bool,
        status_code: int | None,
        error: str | None,
        retry_at: datetime | None,
    ) -> None:
        """Record one attempt: delivered, due again at `retry_at`, or (retry_at None) failed for good."""
        await self._webhooks.record_webhook_attempt(
            delivery_id, delivered=delivered, status_code=status_code, error=error, retry_at=retry_at
        )

    async def list_webhook_deliveries(self, request_id: str | None = None, limit: int = 100) -> list[WebhookDelivery]:
        """The newest webhook messages first, optionally of one request."""
        return await self._webhooks.list_webhook_deliveries(request_id, limit)
