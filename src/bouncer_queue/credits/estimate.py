"""The estimate: what a list will cost and how long it will take, before a credit is spent. It stores nothing.

It reads the rows exactly as submit does (the same reader, the same normal form) and sorts every row with an
address into one of four: invalid by syntax (answered locally), answered by the cache, a repeat of an address
(same lower-cased key) that is sent once, or the first row of a billable address. The billable count is the
number of unique addresses, valid by syntax and not cached, which is what ingest bills. It asks Bouncer for the
balance once (`/credits`, through the shared limiter's `credits` budget) and subtracts what requests not yet
submitted hold in reserve. `submit` and `verify` do not read the list twice: they print the same counts, read
back from the request just stored, before its first batch is enqueued (`stored_counts`).

The time is the floor the account's budgets set: each batch takes one create call (RATE_LIMIT_CREATE_MAX per
window) and at least three batch-endpoint calls (create, a status check, the download; RATE_LIMIT_MAX per
window). Bouncer's own verification time comes on top and is not known in advance.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from bouncer_queue.credits.cache import CacheLookup, cached_among
from bouncer_queue.credits.prefilter import is_deliverable_syntax
from bouncer_queue.storage.records import EmailRow

#: Batch-endpoint calls a batch needs at the least: create, one status check, the download.
CALLS_PER_BATCH = 3
#: How long the estimate waits for a slot in the credits budget before saying the balance is unknown.
CREDITS_WAIT_LIMIT_SECONDS = 10.0
#: A balance read longer ago than this is shown with its date (service.py falls back to a recorded one).
_FRESH_BALANCE_SECONDS = 60.0


@dataclass(frozen=True)
class Budgets:
    """The account's limits the time estimate respects."""

    batch_size: int
    window_seconds: float
    batch_calls: int
    create_calls: int


@dataclass(frozen=True)
class Counts:
    """A list's rows by what they cost: every row with an address is invalid (answered locally), cached, a duplicate
    of an address sent, or the first row of a billable address, so the four add up to `rows`."""

    rows: int
    blank_rows: int
    invalid: int
    duplicates: int
    cached: int
    billable: int


@dataclass(frozen=True)
class Balance:
    """Bouncer's balance as read at `checked_at` (None: unknown), and what unsent requests hold of it."""

    checked_at: datetime
    at_bouncer: int | None
    reserved: int

    @property
    def available(self) -> int | None:
        return None if self.at_bouncer is None else self.at_bouncer - self.reserved


@dataclass(frozen=True)
class Estimate:
    """What a list costs in credits, and the least time the rate-limit budgets allow for it."""

    counts: Counts
    balance: Balance
    batches: int
    seconds: float

    @classmethod
    def of(cls, counts: Counts, balance: Balance, budgets: Budgets) -> Estimate:
        batches, seconds = budget_seconds(counts.billable, budgets)
        return cls(counts, balance, batches, seconds)

    @property
    def billable(self) -> int:
        return self.counts.billable

    def to_dict(self) -> dict[str, Any]:
        """Flat and JSON-ready, as `estimate --json` prints it."""
        balance = self.balance
        return {
            **asdict(self.counts),
            "batches": self.batches,
            "seconds": self.seconds,
            "credits_at_bouncer": balance.at_bouncer,
            "credits_reserved": balance.reserved,
            "credits_available": balance.available,
            "checked_at": balance.checked_at.isoformat(),
        }

    def lines(self) -> list[str]:
        """The summary printed by estimate, verify and submit."""
        c, balance = self.counts, self.balance
        available = "unknown" if balance.available is None else str(balance.available)
        # A balance read now is shown as it is; one a health check recorded earlier (when no credits call could
        # be made) says how old it may be.
        age = (datetime.now(UTC) - balance.checked_at).total_seconds()
        when = f" as of {balance.checked_at:%Y-%m-%d %H:%M} UTC" if age > _FRESH_BALANCE_SECONDS else ""
        held = f" ({balance.at_bouncer} at Bouncer{when}, {balance.reserved} reserved)"
        return [
            f"rows: {c.rows} (blank rows: {c.blank_rows})",
            f"invalid addresses: {c.invalid}, duplicates: {c.duplicates}, cached answers: {c.cached}",
            f"billable: {c.billable} credits in {self.batches} batches",
            f"credits available: {available}" + (held if balance.at_bouncer is not None else ""),
            f"time within the rate-limit budgets: at least {self.seconds:.0f} s (plus Bouncer's verification time)",
        ]


@dataclass
class Tally:
    """Counts of one pass over the rows."""

    rows: int = 0
    invalid: int = 0

    def count(self, rows: Iterable[EmailRow]) -> dict[str, int]:
        """Count `rows`; the rows of each key (lower-cased address) valid by syntax, in first-seen order. Rows
        without an address (`skipped`, kept for the export) are the blank rows, counted by the reader."""
        valid: dict[str, int] = {}
        verdicts: dict[str, bool] = {}
        for row in (r for r in rows if r.skipped is None):
            self.rows += 1
            key = row.email.lower()
            ok = verdicts.get(key)
            if ok is None:
                ok = verdicts[key] = is_deliverable_syntax(row.email)
            if ok:
                valid[key] = valid.get(key, 0) + 1
            else:
                self.invalid += 1
        return valid


def budget_seconds(billable: int, budgets: Budgets) -> tuple[int, float]:
    """The batches `billable` addresses need, and the least time the rate-limit budgets allow for them."""
    batches = math.ceil(billable / budgets.batch_size)
    windows = max(math.ceil(batches / budgets.create_calls), math.ceil(batches * CALLS_PER_BATCH / budgets.batch_calls))
    return batches, max(windows - 1, 0) * budgets.window_seconds


async def count_rows(
    rows: Iterable[EmailRow], blank_rows: Callable[[], int], cache: CacheLookup, since: datetime | None
) -> Counts:
    """Count `rows` (read as submit reads them; `blank_rows` asked once they are read); reads only."""
    tally = Tally()
    valid = tally.count(rows)
    cached = await cached_among(cache, list(valid), since)
    cached_rows = sum(valid[key] for key in cached)
    billable = len(valid) - len(cached)
    duplicates = tally.rows - tally.invalid - cached_rows - billable
    return Counts(tally.rows, blank_rows(), tally.invalid, duplicates, cached_rows, billable)


def stored_counts(by_state: Mapping[str, int], billable: int, blank_rows: int) -> Counts:
    """The same counts for a request just stored (before any batch is sent): its rows by state and billable count."""
    invalid, cached, batched, skipped = (by_state.get(s, 0) for s in ("invalid", "completed", "batched", "skipped"))
    return Counts(sum(by_state.values()) - skipped, blank_rows, invalid, batched - billable, cached, billable)


async def read_balance(acquire: Callable[[], Awaitable[int]], fetch: Callable[[], Awaitable[int]]) -> int | None:
    """One `/credits` call once the credits budget grants a slot (`acquire` answers the wait in ms, 0 = go);
    None when no slot comes within CREDITS_WAIT_LIMIT_SECONDS."""
    waited = 0.0
    while (wait_ms := await acquire()) > 0:
        if waited + wait_ms / 1000 > CREDITS_WAIT_LIMIT_SECONDS:
            return None
        await asyncio.sleep(wait_ms / 1000)
        waited += wait_ms / 1000
    return await fetch()
