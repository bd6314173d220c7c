"""Simulated toxicity lists (Bouncer's `/v1/toxicity/list` API): `processing` → `completed`, or rarely `error`.

A list is ready `queue_delay + len(emails) / speed` seconds after its creation, read lazily from the clock like
batches. Whether it fails is drawn from the seed and its addresses, so the same list fails in every run. Each
address's toxicity (0-5) is the one the result generator gives it, so the two APIs agree.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bouncer_queue.simulator.results import expected_result, iso_ms

PROCESSING, COMPLETED, ERROR = "processing", "completed", "error"


@dataclass
class ToxicityList:
    """One key's toxicity job; `charged` credits are refunded if it ends in `error`."""

    id: str
    key: str
    created: float
    emails: list[str]
    charged: int
    ready_at: float
    fails: bool
    status: str = PROCESSING

    def refresh(self, now: float) -> bool:
        """Bring the status up to `now`; True exactly once, when the list has just failed."""
        if self.status != PROCESSING or now < self.ready_at:
            return False
        self.status = ERROR if self.fails else COMPLETED
        return self.fails

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "createdAt": iso_ms(self.created), "status": self.status}

    def data(self, seed: str) -> list[dict[str, Any]]:
        return [{"email": email, "toxicity": expected_result(email, seed).get("toxicity", 0)} for email in self.emails]


def fails(emails: Sequence[str], seed: str, error_rate: float) -> bool:
    """The deterministic draw deciding whether a list of these addresses ends in `error`."""
    if error_rate <= 0:
        return False
    digest = hashlib.sha256("\x00".join([seed, "toxicity-error", *emails]).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < error_rate


class ToxicityLists:
    """Every key's toxicity lists by id."""

    def __init__(self) -> None:
        self._lists: dict[str, ToxicityList] = {}

    def __len__(self) -> int:
        return len(self._lists)

    def add(
        self, key: str, emails: list[str], *, now: float, charged: int, ready_at: float, fails: bool
    ) -> ToxicityList:
        """Store a new `processing` list under a fresh 24-hex id."""
        job = ToxicityList(secrets.token_hex(12), key, now, emails, charged, ready_at, fails)
        self._lists[job.id] = job
        return job

    def get(self, key: str, list_id: str) -> ToxicityList | None:
        job = self._lists.get(list_id)
        return job if job is not None and job.key == key else None

    def remove(self, list_id: str) -> None:
        del self._lists[list_id]
