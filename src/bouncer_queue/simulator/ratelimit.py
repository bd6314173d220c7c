"""Sliding-window request limits of the simulator, per API key and endpoint group, on the injected clock."""

from __future__ import annotations

from collections import deque


class SlidingWindows:
    """Counts admitted requests per (key, group); a refused request does not use up the window."""

    def __init__(self) -> None:
        self._hits: dict[tuple[str, str], deque[float]] = {}

    def admit(self, key: str, group: str, *, now: float, limit: int, window: float) -> bool:
        """Record a request at `now` and return True, or return False when `limit` were seen in `window`."""
        hits = self._hits.setdefault((key, group), deque())
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= limit:
            return False
        hits.append(now)
        return True

    def retry_after(self, key: str, group: str, *, now: float, window: float) -> float:
        """Seconds until the oldest counted request of (key, group) leaves the window (0 if none is counted)."""
        hits = self._hits.get((key, group))
        return max(0.0, hits[0] + window - now) if hits else 0.0
