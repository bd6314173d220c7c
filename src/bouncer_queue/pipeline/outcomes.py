"""How a pipeline stage tells the queue layer what to do with its job, without knowing bullmq.

- return normally: the job is done.
- raise Defer(ms): run this same job again later; no retry attempt is spent (429s, full slots, polling). With a
  `slot_ticket`, the job also waits to be woken when a batch slot frees (queueing/waiters.py); `ms` is then only
  the fallback timer.
- raise PermanentFailure: no retry; the job is dead-lettered at once (402, other 4xx, exhausted batch retries).
- raise anything else: a retryable failure; the queue retries it with exponential backoff, and dead-letters
  it when the attempts run out.
"""

from __future__ import annotations


class Defer(Exception):
    """Run the job again after `delay_ms`, without spending an attempt; or, with `slot_ticket` (the slot wake-up
    count read before the slots were counted), as soon as a batch slot frees, whichever comes first."""

    def __init__(self, delay_ms: int, reason: str, *, slot_ticket: int | None = None) -> None:
        super().__init__(f"deferred {delay_ms} ms: {reason}")
        self.delay_ms = max(0, int(delay_ms))
        self.reason = reason
        self.slot_ticket = slot_ticket


class PermanentFailure(Exception):
    """Give up on this job now and dead-letter it, with the error class and message given."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(f"{error_class}: {message}")
        self.error_class = error_class
        self.message = message
