"""Queue and job names: the one place that spells them, so producers, workers and the dashboard agree.

The four work queues and their job names follow the seed ("Queue Types"); the dead-letter queue holds copies of
jobs that were given up on. Key prefixes come from Settings.queue_prefix, not from here.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from bouncer_queue.errors import UnknownQueueError

EMAIL_VERIFICATION: Final = "email-verification"
BATCH_STATUS_CHECK: Final = "batch-status-check"
BATCH_DOWNLOAD: Final = "batch-download"
CLEANUP_TASKS: Final = "cleanup-tasks"
DEAD_LETTER: Final = "dead-letter"

#: The queues that have workers, in pipeline order.
WORK_QUEUES: Final = (EMAIL_VERIFICATION, BATCH_STATUS_CHECK, BATCH_DOWNLOAD, CLEANUP_TASKS)
#: Every queue, the dead-letter queue last.
ALL_QUEUES: Final = (*WORK_QUEUES, DEAD_LETTER)

CREATE_BATCH: Final = "create-batch"
RETRY_FAILED_BATCH: Final = "retry-failed-batch"
CHECK_BATCH_STATUS: Final = "check-batch-status"
DOWNLOAD_BATCH_RESULTS: Final = "download-batch-results"
CLEANUP_RATE_LIMITS: Final = "cleanup-rate-limits"
HEALTH_CHECK: Final = "health-check"

#: Which queue each job name is put on.
QUEUE_OF_JOB: Final = MappingProxyType(
    {
        CREATE_BATCH: EMAIL_VERIFICATION,
        RETRY_FAILED_BATCH: EMAIL_VERIFICATION,
        CHECK_BATCH_STATUS: BATCH_STATUS_CHECK,
        DOWNLOAD_BATCH_RESULTS: BATCH_DOWNLOAD,
        CLEANUP_RATE_LIMITS: CLEANUP_TASKS,
        HEALTH_CHECK: CLEANUP_TASKS,
    }
)


def check_queue_name(name: str) -> str:
    """Return `name` if it is a queue of ours, else raise UnknownQueueError naming the valid ones."""
    if name in ALL_QUEUES:
        return name
    raise UnknownQueueError(f"unknown queue {name!r}; valid queues: {', '.join(ALL_QUEUES)}")


def queue_for_job(job_name: str) -> str:
    """The queue a job name belongs on; KeyError for a name that is not ours (a programming error)."""
    return QUEUE_OF_JOB[job_name]
