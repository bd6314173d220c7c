"""ManualClock: a settable clock for the simulator, so tests fast-forward batches instead of sleeping."""

from __future__ import annotations


class ManualClock:
    """Returns `now` (epoch seconds) when called; move it with `advance`."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def __repr__(self) -> str:
        return f"ManualClock(now={self.now})"

    def advance(self, seconds: float) -> None:
        self.now += seconds
