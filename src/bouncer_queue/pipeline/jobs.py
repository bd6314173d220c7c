"""The job specs the pipeline enqueues: one function per job, with its queue and a deterministic job id.

Job ids are derived from the batch id and its retry count, so adding the same job twice (a recovery run, a
redelivered message) is a no-op in bullmq rather than a second Bouncer call.
"""

from __future__ import annotations

from bouncer_queue.domain import Priority
from bouncer_queue.pipeline.ports import JobSpec
from bouncer_queue.queueing.names import (
    BATCH_DOWNLOAD,
    BATCH_STATUS_CHECK,
    CHECK_BATCH_STATUS,
    CLEANUP_RATE_LIMITS,
    CLEANUP_TASKS,
    CREATE_BATCH,
    DEAD_LETTER,
    DOWNLOAD_BATCH_RESULTS,
    EMAIL_VERIFICATION,
    HEALTH_CHECK,
    RETRY_FAILED_BATCH,
)

__all__ = [
    "BATCH_DOWNLOAD",
    "BATCH_STATUS_CHECK",
    "CHECK_BATCH_STATUS",
    "CLEANUP_RATE_LIMITS",
    "CLEANUP_TASKS",
    "CREATE_BATCH",
    "DEAD_LETTER",
    "DOWNLOAD_BATCH_RESULTS",
    "EMAIL_VERIFICATION",
    "HEALTH_CHECK",
    "RETRY_FAILED_BATCH",
    "check_status",
    "create_batch",
    "download",
    "retry_failed",
]


def _data(batch_id: int, request_id: str) -> dict[str, object]:
    return {"batch_id": batch_id, "request_id": request_id}


def create_batch(batch_id: int, request_id: str, priority: Priority, delay_ms: int = 0, retries: int = 0) -> JobSpec:
    return JobSpec(
        EMAIL_VERIFICATION,
        CREATE_BATCH,
        _data(batch_id, request_id),
        priority=priority,
        delay_ms=delay_ms,
        job_id=f"create-{batch_id}-r{retries}",
    )


def check_status(batch_id: int, request_id: str, priority: Priority, delay_ms: int, retries: int = 0) -> JobSpec:
    return JobSpec(
        BATCH_STATUS_CHECK,
        CHECK_BATCH_STATUS,
        _data(batch_id, request_id),
        priority=priority,
        delay_ms=delay_ms,
        job_id=f"check-{batch_id}-r{retries}",
    )


def download(batch_id: int, request_id: str, priority: Priority, retries: int = 0) -> JobSpec:
    return JobSpec(
        BATCH_DOWNLOAD,
        DOWNLOAD_BATCH_RESULTS,
        _data(batch_id, request_id),
        priority=priority,
        job_id=f"download-{batch_id}-r{retries}",
    )


def retry_failed(batch_id: int, request_id: str, priority: Priority, retries: int = 0) -> JobSpec:
    return JobSpec(
        EMAIL_VERIFICATION,
        RETRY_FAILED_BATCH,
        _data(batch_id, request_id),
        priority=priority,
        job_id=f"retry-{batch_id}-r{retries}",
    )
