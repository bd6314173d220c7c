"""Reservations: credits held for the billable addresses of requests not yet submitted.

A request's batches hold their billable count in reserve while they wait (pending, or failed and due again), so a
request starting now sees the balance Bouncer reported minus what others will spend: two requests started
together cannot both count on one balance. The check runs twice: before the list is stored (a quick refusal, from
the estimate) and inside the ingest transaction under the reservation lock (storage/credits.py), where a
concurrent request's reservation is certain to be seen. There the list is stored chunk by chunk, so the check
runs with each chunk on the request's cost so far: a refusal stops the list at that chunk, and what was stored
before it (which the credits cover) goes on; the same list stored again once credits allow resumes the rest.
Batches sent after the balance was read still count as held, since that balance did not show them yet.

`--max-credits N` caps what the request may cost; `--allow-partial` starts it anyway: its batches go out while
credits last, and when Bouncer answers 402 the credits gate holds every submission until a top-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bouncer_queue.storage.repository import RequestCredits


@dataclass(frozen=True)
class CreditLimit:
    """What a request may spend: at most `max_credits`, and at most the balance not held by other requests."""

    checked_at: datetime
    available: int | None = None
    max_credits: int | None = None
    allow_partial: bool = False

    def refusal(self, billable: int, reserved: int) -> str | None:
        """Why a request costing `billable` may not start while others hold `reserved`; None when it may."""
        if self.allow_partial:
            return None
        if self.max_credits is not None and billable > self.max_credits:
            return f"this list needs {billable} credits, more than --max-credits {self.max_credits}"
        if self.available is not None and billable > self.available - reserved:
            held = f", {reserved} of them held by requests not yet submitted" if reserved else ""
            return (
                f"this list needs {billable} credits but {max(self.available - reserved, 0)} are available "
                f"({self.available} at Bouncer{held})"
            )
        return None


def credits_report(requests: Sequence[RequestCredits], at_bouncer: int | None) -> dict[str, Any]:
    """Credits at Bouncer (as last read), reserved for unsent batches, available, and spent: in all and per
    request; what `health` and `stats --json` show."""
    reserved = sum(r.reserved for r in requests)
    return {
        "at_bouncer": at_bouncer,
        "reserved": reserved,
        "available": None if at_bouncer is None else at_bouncer - reserved,
        "spent": sum(r.spent for r in requests),
        "requests": {
            r.request_id: {"billable": r.billable, "reserved": r.reserved, "spent": r.spent} for r in requests
        },
    }
