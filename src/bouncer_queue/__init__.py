"""bouncer-queue: verify email lists through the Bouncer API with BullMQ queues and a database ledger."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
