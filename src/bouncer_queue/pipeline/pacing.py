"""When to poll a running batch again: when it is likely done, within [POLL_MIN_INTERVAL, POLL_INTERVAL].

A batch holds one of the 15 slots until a poll sees it completed, so a fixed interval keeps a finished batch's
slot idle for up to the whole interval, while polling often spends the status budget on batches far from done.
The poll stage therefore aims at the moment the batch should finish: its remaining addresses at the speed seen so
far. The speed comes from the last two polls of our own (progress over our own clock), or, after the first
progress, from Bouncer's `started` time. The aim is a little past the estimate (1 %, at least 50 ms). An early
poll does not cost a whole floor: a batch estimated to end within a floor is polled just past its estimate, below
the floor, when the poll before was a floor or more earlier. A poll below the floor is thus always followed by one
at the floor or later: at most one extra status call per batch end, and the freed slot waits only for the last
addresses, not for a floor. Without any progress yet (still queued at Bouncer), the wait doubles from the floor: it
equals the time since the batch was submitted.

A batch that ends beyond the ceiling is polled again early enough to leave at least a floor before its end:
otherwise a ceiling poll could land just short of the end and the next one, a whole floor later, would find the
slot idle most of that time. The poll before the end thus also refreshes the estimate the last one aims with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

#: Aim this share past the estimated end, and at least _MARGIN_S.
_MARGIN_SHARE = 0.01
_MARGIN_S = 0.05
#: The shortest wait of a poll below the floor (a batch about to end, after a poll a floor or more earlier).
_SHORT_MIN_S = 0.1


@dataclass(frozen=True)
class Progress:
    """One status poll: how many of `quantity` addresses Bouncer had processed at `at` (our clock, seconds)."""

    processed: int
    at: float


def next_poll_ms(
    quantity: int,
    now: Progress,
    *,
    previous: Progress | None,
    started: datetime | None,
    submitted: datetime | None,
    floor_ms: int,
    ceiling_ms: int,
) -> int:
    """The delay until the next poll of a running batch, in ms."""
    speed = _speed(now, previous, started)
    if speed is None:
        wait_s = now.at - submitted.timestamp() if submitted is not None else ceiling_ms / 1000
    else:
        remaining_s = max(0, quantity - now.processed) / speed
        wait_s = remaining_s + max(_MARGIN_S, remaining_s * _MARGIN_SHARE)
        if wait_s * 1000 > ceiling_ms:
            wait_s = min(ceiling_ms / 1000, remaining_s - floor_ms / 1000)
        elif wait_s * 1000 < floor_ms and (previous is None or now.at - previous.at >= floor_ms / 1000):
            return int(max(_SHORT_MIN_S, wait_s) * 1000)
    return max(floor_ms, min(ceiling_ms, int(wait_s * 1000)))


def _speed(now: Progress, previous: Progress | None, started: datetime | None) -> float | None:
    """Addresses per second, from our last two polls, or else since Bouncer started the batch; None if unknown."""
    if now.processed <= 0:
        return None
    if previous is not None and now.processed > previous.processed > 0:
        elapsed = now.at - previous.at
        if elapsed > 0:
            return (now.processed - previous.processed) / elapsed
    if started is not None:
        elapsed = now.at - started.timestamp()
        if elapsed > 0:
            return now.processed / elapsed
    return None
