"""Plain values shared by every layer: priorities, email/batch states, result statuses. No I/O here."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Priority(IntEnum):
    """Request priority; the value is the bullmq priority (1 runs first)."""

    CRITICAL = 1
    HIGH = 2
    NORMAL = 3
    LOW = 4

    @classmethod
    def parse(cls, value: str | int | Priority) -> Priority:
        if isinstance(value, Priority):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[value.strip().upper()]
        except KeyError:
            valid = ", ".join(p.name for p in cls)
            raise ValueError(f"unknown priority {value!r}; valid: {valid}") from None


class EmailState(StrEnum):
    """Where one address of a request stands (Bouncer_Queue.status)."""

    PENDING = "pending"  #: stored, not yet in a batch
    BATCHED = "batched"  #: assigned to a batch that is not yet at Bouncer
    SUBMITTED = "submitted"  #: its batch is at Bouncer
    COMPLETED = "completed"  #: a result is stored
    FAILED = "failed"  #: Bouncer returned no result for it
    DEAD = "dead"  #: its batch was dead-lettered
    INVALID = "invalid"  #: undeliverable by syntax, answered locally and never sent (credits/prefilter.py)
    SKIPPED = "skipped"  #: the input row has no address; stored only so the export gives the row back
    CANCELLED = "cancelled"  #: its request was cancelled before its batch was sent


#: Emails that will not change any more: a request whose emails are all in these states is done.
FINISHED_EMAIL_STATES = frozenset(
    {
        EmailState.COMPLETED,
        EmailState.FAILED,
        EmailState.DEAD,
        EmailState.INVALID,
        EmailState.SKIPPED,
        EmailState.CANCELLED,
    }
)


class BatchState(StrEnum):
    """Where one batch stands (Bouncer_Batches.status)."""

    PENDING = "pending"  #: recorded, waiting for a slot and a rate-limit token
    SUBMITTING = "submitting"  #: the create call is (or was, when a crash hit) under way
    QUEUED = "queued"  #: Bouncer accepted it and has not started
    PROCESSING = "processing"  #: Bouncer is verifying it
    COMPLETED = "completed"  #: Bouncer finished; results not yet stored
    DOWNLOADED = "downloaded"  #: results stored; the batch is done
    FAILED = "failed"  #: Bouncer reported a failure; a retry may follow
    DEAD = "dead"  #: given up; see the dead-letter queue
    CANCELLED = "cancelled"  #: its request was cancelled before the batch was sent; never sent


class RequestState(StrEnum):
    """Where one request stands (Bouncer_Requests.status)."""

    INGESTING = "ingesting"  #: its list is still being stored (chunk by chunk); its first batches may be running
    ACTIVE = "active"  #: stored; some of its batches are not finished
    FINISHED = "finished"  #: every batch is downloaded or dead
    CANCELLED = "cancelled"  #: stopped by a user; unsent batches are never sent


#: Batches that hold one of the MAX_CONCURRENT_BATCHES slots at Bouncer.
IN_FLIGHT_BATCH_STATES = frozenset({BatchState.SUBMITTING, BatchState.QUEUED, BatchState.PROCESSING})
#: Batches whose addresses all have their outcome: nothing more happens to them.
CLOSED_BATCH_STATES = frozenset({BatchState.DOWNLOADED, BatchState.DEAD, BatchState.CANCELLED})


class ResultStatus(StrEnum):
    """Bouncer's verdict on an address."""

    DELIVERABLE = "deliverable"
    RISKY = "risky"
    UNDELIVERABLE = "undeliverable"
    UNKNOWN = "unknown"
