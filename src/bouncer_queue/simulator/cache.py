"""The batch-sync result cache: per API key, a result is remembered for a TTL (Bouncer: 24 h).

A repeat of an address within the TTL is answered with the remembered result and costs no credit; after it,
the address is verified, and charged, again. Addresses compare case-insensitively (`emails.dedup_key`).
"""

from __future__ import annotations

import copy
from typing import Any

from bouncer_queue.emails import dedup_key


class ResultCache:
    """Results by (key, address), each stamped with the time it was stored."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, email: str, *, now: float) -> dict[str, Any] | None:
        """A copy of the cached result, echoing `email` as sent this time; None when absent or expired."""
        entry = self._entries.get((key, dedup_key(email)))
        if entry is None:
            return None
        stored_at, result = entry
        if now - stored_at >= self.ttl:
            del self._entries[(key, dedup_key(email))]
            return None
        return {**copy.deepcopy(result), "email": email.strip()}

    def put(self, key: str, email: str, result: dict[str, Any], *, now: float) -> None:
        self._entries[(key, dedup_key(email))] = (now, copy.deepcopy(result))
