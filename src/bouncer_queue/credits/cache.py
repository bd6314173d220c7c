"""The result cache: an address verified within RESULT_CACHE_DAYS (default 30; 0 turns it off) by another request
is answered from Bouncer_Results, with source `cache`, and never sent again.

Where it applies: at ingest, set-based in the database (storage/credits.py `answer_from_cache`: the newest answer
of each address, copied with its first `verified_at`); in estimate.py, by asking which keys have such an answer.
Every answer is reused, `unknown` included (an address is not paid for twice within the period); `--no-cache` on
verify and submit turns the cache off for one request, to ask Bouncer again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

#: Keys asked about in one query: well under every engine's limit on bound parameters.
LOOKUP_CHUNK = 1_000


class CacheLookup(Protocol):
    async def any_cached(self, since: datetime) -> bool: ...

    async def cached_keys(self, keys: Sequence[str], since: datetime) -> set[str]: ...


def cache_since(days: float, *, now: datetime | None = None) -> datetime | None:
    """The oldest answer the cache may reuse, or None when the cache is off (0 days)."""
    if days <= 0:
        return None
    return (now or datetime.now(UTC)) - timedelta(days=days)


async def cached_among(repo: CacheLookup, keys: Sequence[str], since: datetime | None) -> set[str]:
    """Which of `keys` (lower-cased addresses) the cache would answer; reads only."""
    found: set[str] = set()
    if since is None or not keys or not await repo.any_cached(since):
        return found
    for start in range(0, len(keys), LOOKUP_CHUNK):
        found |= await repo.cached_keys(keys[start : start + LOOKUP_CHUNK], since)
    return found
