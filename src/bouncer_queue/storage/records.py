"""Plain records that cross the storage boundary: what the repository takes and returns (no ORM objects leak)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from bouncer_queue.domain import CLOSED_BATCH_STATES, FINISHED_EMAIL_STATES, BatchState, Priority, RequestState


class EmailRow(NamedTuple):
    """One row of an input list: the address to verify, and the whole input row as given, kept for exports.

    `extra` is the input row itself, every column in order under its header (the address cell as typed, the
    name column too), so an export can give the user back exactly what they gave. A row with no address to
    verify has `skipped` set to the reason and an empty `email`: it is stored for the export, never sent.
    A NamedTuple, like ResultRow, rather than a frozen dataclass: a list of a million rows builds a million of
    them, and a frozen dataclass's __init__ costs about four times as much (one object.__setattr__ a field).
    """

    email: str
    name: str | None = None
    row_number: int | None = None
    extra: Mapping[str, Any] | None = None
    skipped: str | None = None
    #: Undeliverable by syntax (credits/prefilter.py): stored with a local answer, never sent.
    invalid: bool = False


@dataclass(frozen=True)
class RequestInfo:
    """Who asked for a verification run and how urgently, and what finds the request again.

    `fingerprint` identifies the list's content (and the options that shape its results), so a re-run of the
    same list can resume this request; `idempotency_key` is a caller's own key for the same purpose.
    """

    request_id: str
    user_id: str
    priority: Priority = Priority.NORMAL
    delay_ms: int = 0
    source: str | None = None
    fingerprint: str | None = None
    idempotency_key: str | None = None
    webhook_url: str | None = None
    options: Mapping[str, Any] | None = None
    #: Answer addresses verified since then from earlier requests' results (None: no cache).
    cache_since: datetime | None = None
    #: Refuse the request, inside the ingest transaction, when its credits do not fit (credits/reservations.py).
    credit_check: CreditCheck | None = None


class CreditCheck(Protocol):
    """What ingest asks before committing a request: may `billable` credits be spent, with `reserved` already
    held by other requests (their batches not yet submitted, or submitted since `checked_at`)?"""

    @property
    def checked_at(self) -> datetime: ...

    def refusal(self, billable: int, reserved: int) -> str | None: ...


@dataclass(frozen=True)
class RequestRecord:
    """One row of Bouncer_Requests."""

    request_id: str
    user_id: str
    priority: Priority
    delay_ms: int
    status: RequestState
    total_emails: int
    batch_count: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    source: str | None = None
    fingerprint: str | None = None
    idempotency_key: str | None = None
    webhook_url: str | None = None
    options: Mapping[str, Any] | None = None
    #: Credits the request costs (credits/): unique addresses, valid by syntax, not answered from the cache.
    billable: int = 0


@dataclass(frozen=True)
class BatchRecord:
    """One row of Bouncer_Batches."""

    id: int
    request_id: str
    user_id: str
    priority: Priority
    status: BatchState
    quantity: int
    bouncer_batch_id: str | None = None
    duplicates: int = 0
    processed: int = 0
    credits_used: int | None = None
    #: Unique addresses the batch sends: the credits it costs.
    billable: int = 0
    attempts: int = 0
    retries: int = 0
    last_error: str | None = None
    created_at: datetime | None = None
    submitted_at: datetime | None = None
    completed_at: datetime | None = None
    downloaded_at: datetime | None = None
    #: When the row last changed state; for a `submitting` batch, when its slot was claimed.
    updated_at: datetime | None = None


@dataclass(frozen=True)
class SubmittedBatch:
    """Bouncer's answer to a batch create (or its callback): the batch's id there, its counts and state."""

    bouncer_batch_id: str
    #: None keeps the count the ledger has (a callback body may not carry it).
    quantity: int | None = None
    duplicates: int = 0
    status: BatchState = BatchState.QUEUED


@dataclass(frozen=True)
class BatchEmail:
    """An address as sent to Bouncer in a batch."""

    email: str
    name: str | None = None


class ResultRow(NamedTuple):
    """One verification result to store: Bouncer's whole result object as `raw`, or as `raw_json`, its JSON text
    as received (a download keeps only the text: stored as is, never encoded again, and up to 100,000 decoded
    objects are not kept alive). A NamedTuple rather than a frozen dataclass: it is built several times faster."""

    email: str
    status: str
    reason: str | None
    score: int | None = None
    domain: str | None = None
    accept_all: str | None = None
    disposable: str | None = None
    free: str | None = None
    role: str | None = None
    disabled: str | None = None
    full_mailbox: str | None = None
    provider: str | None = None
    toxic: str | None = None
    toxicity: int | None = None
    raw: Mapping[str, Any] | None = None
    raw_json: str | None = None

    def raw_object(self) -> Mapping[str, Any]:
        """Bouncer's whole result object, from `raw` or else decoded from `raw_json`."""
        if self.raw is not None:
            return self.raw
        return json.loads(self.raw_json) if self.raw_json is not None else {}


@dataclass(frozen=True)
class StoreTotals:
    """What storing one batch's results did."""

    stored: int
    emails_completed: int
    emails_missing: int


@dataclass(frozen=True)
class RequestProgress:
    """Counts of one request's emails by state and batches by state."""

    request_id: str
    emails_total: int
    emails_by_state: Mapping[str, int]
    batches_total: int
    batches_by_state: Mapping[str, int]
    #: Credits of the batches Bouncer has (what it charged once known), and of those still to send.
    credits_spent: int = 0
    credits_to_spend: int = 0
    #: The list is still being stored (RequestState.INGESTING): more rows are coming, so it is not done.
    ingesting: bool = False

    @property
    def finished(self) -> int:
        """Rows with an outcome: a result (Bouncer's, cached or local), given up on, skipped or cancelled."""
        return sum(self.emails_by_state.get(s, 0) for s in FINISHED_EMAIL_STATES)

    @property
    def done(self) -> bool:
        return not self.ingesting and self.emails_total > 0 and self.finished >= self.emails_total


@dataclass(frozen=True)
class BatchProgress:
    """A request's batches by state and its credits, read without counting its addresses (a few rows, where
    RequestProgress reads one per address): what moves while the request is verified."""

    batches_by_state: Mapping[str, int]
    #: Addresses sent or to send in batches not yet closed (downloaded, dead or cancelled).
    open_quantity: int
    credits_spent: int = 0
    credits_to_spend: int = 0

    @property
    def open_batches(self) -> int:
        return sum(n for state, n in self.batches_by_state.items() if state not in CLOSED_BATCH_STATES)


#: The main flags of a result, in the order exports write them: Bouncer_Results keeps each in a column of its own.
FLAG_COLUMNS = ("accept_all", "disposable", "free", "role", "disabled", "full_mailbox", "provider", "toxicity")


class ExportRow(NamedTuple):
    """An input row joined with its result, for `results` exports. A NamedTuple, like EmailRow: an export builds
    one a row, and a frozen dataclass's __init__ was a tenth of a CSV export's CPU. Bouncer's object comes as its
    stored text (`raw_json`), decoded by `raw` when asked for: an export takes the flags from their columns."""

    email: str
    name: str | None
    row_number: int | None
    extra: Mapping[str, Any] | None
    state: str
    status: str | None
    reason: str | None
    score: int | None
    #: Bouncer's whole result object, as the JSON text stored (None: no result, or not from Bouncer).
    raw_json: str | None
    #: Who answered: bouncer, cache or local (None while unanswered), and when the answer was made.
    source: str | None = None
    verified_at: datetime | None = None
    #: The result's FLAG_COLUMNS as stored in their columns (None: not read with the row).
    flags: tuple[Any, ...] | None = None

    @property
    def raw(self) -> dict[str, Any] | None:
        """Bouncer's whole result object, decoded from `raw_json` at each access."""
        if self.raw_json is None:
            return None
        value = json.loads(self.raw_json)
        return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class DeadLetter:
    """One row of Bouncer_Dead_Letter_Queue."""

    id: int
    queue: str
    job_name: str
    payload: Mapping[str, Any]
    error_class: str
    message: str
    attempts: int
    created_at: datetime
    replayed_at: datetime | None = None
    batch_id: int | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class HealthMetric:
    """One row of Bouncer_Health_Metrics: a health check's snapshot."""

    status: str
    snapshot: Mapping[str, Any]
    alerts: tuple[str, ...] = ()
    recorded_at: datetime | None = None
    id: int | None = None


@dataclass(frozen=True)
class RequestTimeline:
    """When a request's batches started and ended at Bouncer, and what they cost."""

    credits_used: int
    started_at: datetime | None
    last_finished_at: datetime | None


@dataclass(frozen=True)
class ApiToken:
    """One row of Bouncer_Api_Tokens, without its hash: what may be shown."""

    id: int
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class WebhookDelivery:
    """One row of Bouncer_Webhook_Deliveries: a webhook message and how its delivery went."""

    id: int
    message_id: str
    request_id: str
    event: str
    url: str
    payload: Mapping[str, Any]
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None
