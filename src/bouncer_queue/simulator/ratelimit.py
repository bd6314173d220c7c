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
