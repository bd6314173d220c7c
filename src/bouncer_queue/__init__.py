"""bouncer-queue: verify email lists through the Bouncer API with BullMQ queues and a database ledger.

The light public names are importable from here; the service itself is `bouncer_queue.service.QueueManager`
(kept out of this module so that importing the package, e.g. for the simulator, does not load bullmq).
"""

from __future__ import annotations

from bouncer_queue.config import Settings
from bouncer_queue.domain import BatchState, EmailState, Priority, ResultStatus
from bouncer_queue.errors import (
    ConfigError,
    InputError,
    QueueBackendError,
    StorageError,
    UnknownQueueError,
    VerifierError,
)

__version__ = "0.1.0"

__all__ = [
    "BatchState",
    "ConfigError",
    "EmailState",
    "InputError",
    "Priority",
    "QueueBackendError",
    "ResultStatus",
    "Settings",
    "StorageError",
    "UnknownQueueError",
    "VerifierError",
    "__version__",
]
