"""The credit rules without I/O: what the syntax pre-filter refuses, how the estimate counts and times a list,
and when a reservation refuses a request."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from bouncer_queue.credits.cache import cache_since, cached_among
from bouncer_queue.credits.estimate import (
    Balance,
    Budgets,
    Estimate,
    budget_seconds,
    count_rows,
    read_balance,
    stored_counts,
)
from bouncer_queue.credits.prefilter import is_deliverable_syntax, mark_invalid
from bouncer_queue.credits.reservations import CreditLimit
from bouncer_queue.storage.records import EmailRow

NOW = datetime(2026, 11, 30, tzinfo=UTC)
BUDGETS = Budgets(batch_size=10, window_seconds=60, batch_calls=180, create_calls=60)


@pytest.mark.parametrize(
    "address",
    [
        "ann@example.com",
        "Ann.Lee+tag@Example.COM",
        "o'brien@corp.example",
        "ü@beispiel.de",  # internationalized: Bouncer may still reach it, so it is sent
        "l" * 64 + "@example.com",
    ],
)
def test_deliverable_by_syntax(address: str) -> None:
    assert is_deliverable_syntax(address)


@pytest.mark.parametrize(
    "address",
    [
        "",
        "no-at-sign",
        "a..b@example.com",
        ".a@example.com",
        "a b@example.com",
        '"quoted"@example.com',
        "a@[127.0.0.1]",
        "x@y",
        "user@acme.test",  # special-use names never deliver
        "user@host.local",
        "a@example.123",
        "l" * 65 + "@example.com",  # RFC 5321: 64 octets before the @
        "é" * 33 + "@example.com",  # 66 octets in UTF-8, though 33 characters
        "a@" + "d" * 250 + ".com",  # 254 in all
        "l" * 250 + "@example.com",
    ],
)
def test_undeliverable_by_syntax(address: str) -> None:
    assert not is_deliverable_syntax(address)


def test_mark_invalid_flags_rows_and_keeps_the_others() -> None:
    good, bad = EmailRow("a@example.com", row_number=1), EmailRow("nope", row_number=2)
    marked = mark_invalid([good, bad])
    assert marked[0] is good
    assert (marked[1].email, marked[1].row_number, marked[1].invalid) == ("nope", 2, True)


def test_mark_invalid_leaves_rows_without_an_address_alone() -> None:
    blank = EmailRow("", row_number=3, skipped="no email")
    assert mark_invalid([blank])[0] is blank  # kept for the export as skipped, not answered as invalid


async def test_rows_without_an_address_are_blank_rows_not_invalid_ones() -> None:
    rows = [EmailRow("a@example.com"), EmailRow("", skipped="no email"), EmailRow("bad")]

    counts = await count_rows(rows, lambda: 1, FakeCache(set()), NOW)

    assert (counts.rows, counts.blank_rows, counts.invalid, counts.billable) == (2, 1, 1, 1)
    assert stored_counts({"batched": 1, "invalid": 1, "skipped": 1}, billable=1, blank_rows=1) == counts


def test_budget_time_is_the_busier_budget_s_windows() -> None:
    assert budget_seconds(0, BUDGETS) == (0, 0.0)
    assert budget_seconds(600, BUDGETS) == (60, 0.0)  # 60 creates and 180 calls fit in one window
    assert budget_seconds(601, BUDGETS) == (61, 60.0)
    calls_bound = Budgets(batch_size=10, window_seconds=60, batch_calls=30, create_calls=60)
    assert budget_seconds(100, calls_bound) == (10, 0.0)
    assert budget_seconds(110, calls_bound) == (11, 60.0)  # 33 calls > 30 a window


class FakeCache:
    def __init__(self, answered: set[str]) -> None:
        self.answered = answered
        self.asked: list[int] = []

    async def any_cached(self, since: datetime) -> bool:
        return bool(self.answered)

    async def cached_keys(self, keys: Sequence[str], since: datetime) -> set[str]:
        self.asked.append(len(keys))
        return self.answered & set(keys)


async def test_every_row_is_invalid_cached_a_duplicate_or_billable() -> None:
    emails = ["a@example.com", "A@EXAMPLE.COM", "bad", "bad", "b@example.com", "B@example.com", "c@example.com", "x@y"]
    cache = FakeCache({"b@example.com"})

    counts = await count_rows([EmailRow(e) for e in emails], lambda: 2, cache, NOW)

    assert (counts.rows, counts.blank_rows, counts.invalid, counts.cached) == (8, 2, 3, 2)
    assert (counts.duplicates, counts.billable) == (1, 2)  # A@EXAMPLE.COM; a@ and c@
    assert counts.invalid + counts.cached + counts.duplicates + counts.billable == counts.rows
    stored = stored_counts({"invalid": 3, "completed": 2, "batched": 3}, billable=2, blank_rows=2)
    assert stored == counts  # what submit reads back from the stored request says the same
    estimate = Estimate.of(counts, Balance(NOW, at_bouncer=100, reserved=40), BUDGETS)
    assert estimate.to_dict()["credits_available"] == 60
    assert "billable: 2 credits in 1 batches" in estimate.lines()


async def test_the_cache_is_asked_in_chunks_and_not_at_all_when_off_or_empty() -> None:
    cache = FakeCache({"k1", "k2"})
    keys = [f"k{i}" for i in range(2_500)]
    assert await cached_among(cache, keys, NOW) == {"k1", "k2"}
    assert cache.asked == [1_000, 1_000, 500]
    assert await cached_among(cache, keys, None) == set()
    assert await cached_among(FakeCache(set()), keys, NOW) == set()
    assert cache_since(0) is None
    assert cache_since(30, now=NOW) == datetime(2026, 10, 31, tzinfo=UTC)


async def test_read_balance_waits_for_the_credits_budget_within_a_bound() -> None:
    waits = iter([5, 0])

    async def acquire() -> int:
        return next(waits)

    async def fetch() -> int:
        return 7

    assert await read_balance(acquire, fetch) == 7

    async def never() -> int:
        return 60_000

    assert await read_balance(never, fetch) is None


def test_a_reservation_refuses_over_max_credits_or_over_what_others_leave() -> None:
    limit = CreditLimit(NOW, available=100, max_credits=50)
    assert limit.refusal(50, 50) is None
    assert "more than --max-credits 50" in (limit.refusal(51, 0) or "")
    assert "needs 50 credits but 49 are available" in (limit.refusal(50, 51) or "")
    assert CreditLimit(NOW, available=None).refusal(10**9, 0) is None  # an unknown balance refuses nothing
    assert CreditLimit(NOW, available=0, max_credits=0, allow_partial=True).refusal(10, 10) is None
