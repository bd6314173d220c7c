"""The six tables of the seed, plus Bouncer_Requests, Bouncer_Api_Tokens and Bouncer_Webhook_Deliveries, as
SQLAlchemy 2 Mapped models, valid on SQLite, PostgreSQL and MariaDB.

Table names are the seed's exactly. Bouncer_Requests (migration 0002) is ours: one row per request, so a request
can be found again by its content (a re-run resumes it) or by an idempotency key, and listed. The HTTP API's
tokens (stored as hashes only) and its webhook delivery log (migration 0003) are ours too. Migration 0005 adds
what credits/ needs: each result's `source`, the billable count of every batch and request, and an index to find
an address's earlier results.

Times are stored as naive UTC (`UtcDateTime`) and come back timezone-aware,
so every engine returns the same values. String lengths keep every index under MariaDB's 3072-byte key limit in
utf8mb4 (4 bytes a character): the longest, results (request_id, email), is (64 + 254) * 4 = 1272 bytes.
Bouncer_Queue.email is TEXT and in no index: it keeps a list's cell whole, however long (an address over 254
characters is answered locally and never becomes a result key).
The migrations in migrations/versions/ create the same schema; a test compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

EMAIL_LENGTH = 254
REQUEST_ID_LENGTH = 64
USER_ID_LENGTH = 128
#: Bouncer_Queue leaves half of each PostgreSQL page free: every row's status is updated (submitted, then
#: completed or failed) a whole batch at a time, and with room on the same page and `status` in no index
#: those updates are HOT (no index entries written), which halves the cost of storing a batch's results.
QUEUE_FILLFACTOR = 50

#: SQLite only turns INTEGER PRIMARY KEY into an auto-incrementing rowid; BIGINT would stay NULL.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A naive-UTC timestamp column (microseconds on MariaDB too) that reads back as an aware UTC datetime."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


def utcnow() -> datetime:
    """Now, as the naive UTC value stored in every time column."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class RequestModel(Base):
    """Bouncer_Requests: one row per request (a list handed in once), written in the ingest transaction."""

    __tablename__ = "Bouncer_Requests"
    __table_args__ = (
        Index(None, "fingerprint"),
        Index(None, "created_at"),
    )

    request_id: Mapped[str] = mapped_column(String(REQUEST_ID_LENGTH), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(USER_ID_LENGTH))
    priority: Mapped[int] = mapped_column(Integer)
    delay_ms: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))
    #: Where the list came from (a file name, "api", "python"); for people, not for lookups.
    source: Mapped[str | None] = mapped_column(String(255))
    #: sha256 of the list's content and the options that shape its results: the same list again finds this row.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    #: A caller's key: the same key returns the same request instead of storing a second one.
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    options: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    total_emails: Mapped[int] = mapped_column(Integer, default=0)
    batch_count: Mapped[int] = mapped_column(Integer, default=0)
    #: Addresses Bouncer must answer (unique, valid by syntax, not cached): the credits the request costs.
    billable: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class BatchModel(Base):
    """Bouncer_Batches: one row per batch of up to BATCH_SIZE emails sent to Bouncer."""

    __tablename__ = "Bouncer_Batches"
    __table_args__ = (
        Index(None, "status"),
        Index(None, "request_id"),
        Index(None, "callback_token", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    bouncer_batch_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    request_id: Mapped[str] = mapped_column(String(REQUEST_ID_LENGTH))
    user_id: Mapped[str] = mapped_column(String(USER_ID_LENGTH))
    priority: Mapped[int] = mapped_column(Integer)
    delay_ms: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    #: Unique addresses the batch sends, i.e. the credits it costs (held in reserve while it is pending).
    billable: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    processed: Mapped[int] = mapped_column(Integer, default=0)
    credits_used: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    downloaded_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    #: SHA-256 digest of the secret token in the batch's callback URL (migration 0004); cleared once used.
    callback_token: Mapped[str | None] = mapped_column(String(64))


class QueueModel(Base):
    """Bouncer_Queue: one row per email of a request, with the rest of its input row kept for exports."""

    __tablename__ = "Bouncer_Queue"
    __table_args__ = (
        Index(None, "batch_id"),
        Index(None, "request_id"),
        {"postgresql_with": {"fillfactor": QUEUE_FILLFACTOR}},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(REQUEST_ID_LENGTH))
    user_id: Mapped[str] = mapped_column(String(USER_ID_LENGTH))
    email: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(String(255))
    row_number: Mapped[int | None] = mapped_column(Integer)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    priority: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    #: No foreign key (migration 0006): its check per stored row was nearly half of storing a list chunk, and a
    #: batch is deleted only when no row names it (credits.recount_batch).
    batch_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ResultModel(Base):
    """Bouncer_Results: one row per verified email of a request; `email` is stored lower-cased."""

    __tablename__ = "Bouncer_Results"
    __table_args__ = (
        UniqueConstraint("request_id", "email"),
        Index(None, "request_id", "status"),
        #: The result cache finds an address's answers from other requests by it (credits/cache.py).
        Index(None, "email"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(REQUEST_ID_LENGTH))
    email: Mapped[str] = mapped_column(String(EMAIL_LENGTH))
    #: No foreign key (migration 0007): its check per stored result was 40-50 % of storing a download.
    batch_id: Mapped[int | None] = mapped_column(BigId)
    status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(64))
    score: Mapped[int | None] = mapped_column(Integer)
    domain: Mapped[str | None] = mapped_column(String(255))
    accept_all: Mapped[str | None] = mapped_column(String(16))
    disposable: Mapped[str | None] = mapped_column(String(16))
    free: Mapped[str | None] = mapped_column(String(16))
    role: Mapped[str | None] = mapped_column(String(16))
    disabled: Mapped[str | None] = mapped_column(String(16))
    full_mailbox: Mapped[str | None] = mapped_column(String(16))
    provider: Mapped[str | None] = mapped_column(String(128))
    toxic: Mapped[str | None] = mapped_column(String(16))
    toxicity: Mapped[int | None] = mapped_column(Integer)
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    verified_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    #: Who answered: `bouncer` (downloaded) or `cache` (copied from an earlier request, `verified_at` kept).
    #: Local answers (invalid by syntax) stay on the Bouncer_Queue row (state `invalid`).
    source: Mapped[str] = mapped_column(String(16), default="bouncer", server_default="bouncer")


class RateLimitModel(Base):
    """Bouncer_Rate_Limit: one row per Bouncer call, the sliding-window log of storage/ratelimit.py."""

    __tablename__ = "Bouncer_Rate_Limit"
    __table_args__ = (Index(None, "budget", "requested_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    budget: Mapped[str] = mapped_column(String(32))
    endpoint: Mapped[str] = mapped_column(String(64))
    #: Epoch seconds, double precision.
    requested_at: Mapped[float] = mapped_column(Double)
    worker: Mapped[str | None] = mapped_column(String(128))


class DeadLetterModel(Base):
    """Bouncer_Dead_Letter_Queue: jobs that exhausted their attempts, kept for inspection and replay."""

    __tablename__ = "Bouncer_Dead_Letter_Queue"
    __table_args__ = (Index(None, "replayed_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    queue: Mapped[str] = mapped_column(String(64))
    job_name: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[int | None] = mapped_column(BigId)
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID_LENGTH))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    error_class: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    replayed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class HealthMetricModel(Base):
    """Bouncer_Health_Metrics: one row per health check, with the numbers worth charting in their own columns."""

    __tablename__ = "Bouncer_Health_Metrics"
    __table_args__ = (Index(None, "recorded_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16))
    alerts: Mapped[list[str]] = mapped_column(JSON)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    backlog: Mapped[float | None] = mapped_column(Double)
    failed_jobs: Mapped[float | None] = mapped_column(Double)
    rate_limit_utilization: Mapped[float | None] = mapped_column(Double)
    memory_mb: Mapped[float | None] = mapped_column(Double)
    redis_latency_ms: Mapped[float | None] = mapped_column(Double)
    batches_in_flight: Mapped[float | None] = mapped_column(Double)
    credits_left: Mapped[float | None] = mapped_column(Double)


class ApiTokenModel(Base):
    """Bouncer_Api_Tokens: one row per HTTP API token; only the token's SHA-256 is kept, never the token."""

    __tablename__ = "Bouncer_Api_Tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The token's first characters (its public part), so a person can tell tokens apart in `tokens list`.
    prefix: Mapped[str] = mapped_column(String(16))
    #: Comma-separated scopes: read, submit, admin.
    scopes: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class WebhookDeliveryModel(Base):
    """Bouncer_Webhook_Deliveries: one row per webhook message (a request finished or failed), with its attempts."""

    __tablename__ = "Bouncer_Webhook_Deliveries"
    __table_args__ = (Index(None, "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: The `webhook-id` header; one message per request, so a second sweep cannot send it twice.
    message_id: Mapped[str] = mapped_column(String(96), unique=True)
    request_id: Mapped[str] = mapped_column(String(REQUEST_ID_LENGTH))
    event: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: pending (an attempt is due at next_attempt_at), sending, delivered, or failed (attempts exhausted).
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


#: The numeric columns of Bouncer_Health_Metrics that `Repository.record_health_metric` accepts.
HEALTH_NUMBER_COLUMNS = (
    "backlog",
    "failed_jobs",
    "rate_limit_utilization",
    "memory_mb",
    "redis_latency_ms",
    "batches_in_flight",
    "credits_left",
)
