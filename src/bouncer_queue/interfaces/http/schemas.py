"""The API's request bodies (…In) and answers (…Out), kept apart so a stored field never leaks by accident.

The `to_…` functions are the one serializer of each record, shared by the JSON routes and the dashboard.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from bouncer_queue.pipeline.cancel import CancelResult
from bouncer_queue.pipeline.deadletter import may_have_been_charged
from bouncer_queue.storage.records import ApiToken, BatchRecord, DeadLetter, RequestRecord
from bouncer_queue.tracking import RequestStatus


class EmailIn(BaseModel):
    """One address with its name; other keys are kept as the row's columns."""

    model_config = ConfigDict(extra="allow")

    email: str
    name: str | None = None


class RequestIn(BaseModel):
    """A list as JSON: the seed's `{emails: [...], userId}` shape, plus our options."""

    model_config = ConfigDict(populate_by_name=True)

    emails: list[str | EmailIn] = Field(min_length=1)
    user_id: str = Field(default="api", max_length=128, validation_alias=AliasChoices("user_id", "userId"))
    priority: str = "NORMAL"
    delay: int = Field(default=0, ge=0, description="Hold the request back this many milliseconds.")
    idempotency_key: str | None = Field(
        default=None, max_length=128, validation_alias=AliasChoices("idempotency_key", "idempotencyKey")
    )
    webhook_url: str | None = Field(default=None, validation_alias=AliasChoices("webhook_url", "webhookUrl"))
    max_credits: int | None = Field(
        default=None,
        ge=0,
        validation_alias=AliasChoices("max_credits", "maxCredits"),
        description="Refuse the list (402) when it needs more credits than this.",
    )
    allow_partial: bool = Field(
        default=False,
        validation_alias=AliasChoices("allow_partial", "allowPartial"),
        description="Start a list the balance does not cover: its batches go out while credits last.",
    )


class AcceptedOut(BaseModel):
    """What POST /requests answers: the request, and where to follow it."""

    request_id: str
    created: bool
    total_emails: int
    batch_count: int
    skipped_rows: int = 0
    status_url: str
    results_url: str


class RequestOut(BaseModel):
    request_id: str
    user_id: str
    status: str
    priority: str
    total_emails: int
    batch_count: int
    source: str | None
    idempotency_key: str | None
    webhook_url: str | None
    created_at: datetime
    finished_at: datetime | None


class ProgressOut(BaseModel):
    emails_total: int
    emails_finished: int
    fraction: float
    emails_by_state: dict[str, int]
    batches_total: int
    batches_by_state: dict[str, int]


class RequestDetailOut(RequestOut):
    done: bool
    progress: ProgressOut
    credits_used: int
    started_at: datetime | None
    eta: datetime | None


class RequestPageOut(BaseModel):
    items: list[RequestOut]
    limit: int
    offset: int
    next_offset: int | None


class BatchOut(BaseModel):
    id: int
    status: str
    quantity: int
    processed: int
    bouncer_batch_id: str | None
    credits_used: int | None
    retries: int
    last_error: str | None
    submitted_at: datetime | None
    downloaded_at: datetime | None


class QueueOut(BaseModel):
    name: str
    paused: bool
    counts: dict[str, int]


class OperationOut(BaseModel):
    queue: str
    action: str
    count: int | None = None


class DeadLetterOut(BaseModel):
    id: int
    queue: str
    job_name: str
    error_class: str
    message: str
    attempts: int
    batch_id: int | None
    request_id: str | None
    created_at: datetime
    replayed_at: datetime | None
    #: Its create call got no usable answer: Bouncer may hold and bill the batch; replay needs `force`.
    may_have_been_charged: bool = False


class ReplayOut(BaseModel):
    id: int
    replayed: bool


class CancelOut(BaseModel):
    """What cancelling a request did (QueueManager.cancel_request); repeating it does nothing more."""

    request_id: str
    #: Batches not yet at Bouncer: never sent now.
    batches_cancelled: int
    #: Batches at Bouncer, finished early: the addresses not yet verified are refunded.
    batches_finished: int
    #: Batches whose finish call failed, and why (they then complete as usual).
    errors: list[str]


class TokenOut(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None


def to_request(record: RequestRecord, status: str | None = None) -> RequestOut:
    return RequestOut(**_request_fields(record, status))


def _request_fields(record: RequestRecord, status: str | None) -> dict[str, Any]:
    return {
        "request_id": record.request_id,
        "user_id": record.user_id,
        "status": status or record.status.value,
        "priority": record.priority.name,
        "total_emails": record.total_emails,
        "batch_count": record.batch_count,
        "source": record.source,
        "idempotency_key": record.idempotency_key,
        "webhook_url": record.webhook_url,
        "created_at": record.created_at,
        "finished_at": record.finished_at,
    }


def to_detail(status: RequestStatus) -> RequestDetailOut:
    progress = status.progress
    fields = _request_fields(status.request, status.state) | {"finished_at": status.finished_at}
    return RequestDetailOut(
        **fields,
        done=status.done,
        progress=ProgressOut(
            emails_total=progress.emails_total,
            emails_finished=status.finished_emails,
            fraction=round(status.fraction, 4),
            emails_by_state=dict(progress.emails_by_state),
            batches_total=progress.batches_total,
            batches_by_state=dict(progress.batches_by_state),
        ),
        credits_used=status.timeline.credits_used,
        started_at=status.timeline.started_at,
        eta=status.eta,
    )


def to_batch(batch: BatchRecord) -> BatchOut:
    return BatchOut(
        id=batch.id,
        status=batch.status.value,
        quantity=batch.quantity,
        processed=batch.processed,
        bouncer_batch_id=batch.bouncer_batch_id,
        credits_used=batch.credits_used,
        retries=batch.retries,
        last_error=batch.last_error,
        submitted_at=batch.submitted_at,
        downloaded_at=batch.downloaded_at,
    )


def to_dead_letter(letter: DeadLetter) -> DeadLetterOut:
    return DeadLetterOut(
        id=letter.id,
        queue=letter.queue,
        job_name=letter.job_name,
        error_class=letter.error_class,
        message=letter.message,
        attempts=letter.attempts,
        batch_id=letter.batch_id,
        request_id=letter.request_id,
        created_at=letter.created_at,
        replayed_at=letter.replayed_at,
        may_have_been_charged=may_have_been_charged(letter),
    )


def to_token(token: ApiToken) -> TokenOut:
    return TokenOut(
        id=token.id,
        name=token.name,
        prefix=token.prefix,
        scopes=list(token.scopes),
        created_at=token.created_at,
        last_used_at=token.last_used_at,
    )


def to_cancel(outcome: CancelResult) -> CancelOut:
    return CancelOut(
        request_id=outcome.request_id,
        batches_cancelled=outcome.batches_cancelled,
        batches_finished=outcome.batches_finished,
        errors=list(outcome.errors),
    )
