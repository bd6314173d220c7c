"""What a caller sees of one request: its row, its counts by state, its timeline, and an estimate of time left.

The HTTP API (GET /api/v1/requests/{id}) and the dashboard both show a `RequestStatus`, built by
QueueManager.request_status from the repository; `done` and the ETA are decided here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bouncer_queue.storage.records import RequestProgress, RequestRecord, RequestTimeline


@dataclass(frozen=True)
class RequestStatus:
    """A request as the interfaces show it."""

    request: RequestRecord
    progress: RequestProgress
    timeline: RequestTimeline
    now: datetime

    @property
    def finished_emails(self) -> int:
        return self.progress.finished  # answered by Bouncer, the cache or the pre-filter, or given up on

    @property
    def done(self) -> bool:
        return self.progress.done

    @property
    def fraction(self) -> float:
        total = self.progress.emails_total
        return self.finished_emails / total if total else 0.0

    @property
    def state(self) -> str:
        """The recorded state, or `finished` as soon as every address has an outcome."""
        recorded = self.request.status.value
        return "finished" if recorded == "active" and self.done else recorded

    @property
    def finished_at(self) -> datetime | None:
        return self.request.finished_at or (self.timeline.last_finished_at if self.done else None)

    @property
    def eta(self) -> datetime | None:
        """When the rest should be done, at the pace so far since the first batch reached Bouncer."""
        started, finished = self.timeline.started_at, self.finished_emails
        if self.done or started is None or finished == 0:
            return None
        elapsed = (self.now - started).total_seconds()
        remaining = self.progress.emails_total - finished
        return self.now + timedelta(seconds=elapsed * remaining / finished)


def status_of(request: RequestRecord, progress: RequestProgress, timeline: RequestTimeline) -> RequestStatus:
    return RequestStatus(request, progress, timeline, datetime.now(UTC))
