"""What ingest bills, on every engine: invalid rows answered locally (stored whole, however long), answers reused
from earlier requests within the cache period, batch recounts, reservations and credits spent."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, text

from bouncer_queue.domain import BatchState, Priority
from bouncer_queue.errors import CreditsRefused
from bouncer_queue.storage.credits import RESERVE_LOCK
from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.locks import NamedLock, take
from bouncer_queue.storage.records import EmailRow, RequestInfo, ResultRow
from bouncer_queue.storage.repository import ClaimResult, Repository
from bouncer_queue.storage.tables import BatchModel, RequestModel
from bouncer_queue.storage.transactions import Database

LONG = "l" * 300 + "@example.com"
EARLIER = RequestInfo(request_id="earlier", user_id="u", priority=Priority.NORMAL)


def _request(request_id: str, **fields: object) -> RequestInfo:
    since = datetime.now(UTC) - timedelta(days=30)
    return replace(RequestInfo(request_id=request_id, user_id="u"), cache_since=since, **fields)  # type: ignore[arg-type]


def _rows(*emails: str, invalid: tuple[str, ...] = (), start: int = 1) -> list[EmailRow]:
    return [EmailRow(email=e, row_number=n, invalid=e in invalid) for n, e in enumerate(emails, start=start)]


async def _verified_earlier(repo: Repository, *emails: str, status: str = "deliverable") -> None:
    [batch] = await repo.ingest_request(replace(EARLIER, request_id=f"earlier-{emails[0]}"), [_rows(*emails)])
    results = [ResultRow(email=e, status=status, reason="accepted_email", raw={"email": e}) for e in emails]
    await repo.store_results(batch, results)


async def test_invalid_rows_are_stored_whole_in_no_batch_with_a_local_answer(repo: Repository) -> None:
    chunk = _rows("a@example.com", LONG, "nope", invalid=(LONG, "nope"))
    [batch_id] = await repo.ingest_request(_request("r1"), [chunk, _rows("x@", invalid=("x@",), start=4)])

    batch = await repo.get_batch(batch_id)
    assert batch is not None and (batch.quantity, batch.billable) == (1, 1)
    assert [e.email for e in await repo.batch_emails(batch_id)] == ["a@example.com"]
    exported = {row.email: row async for row in repo.iter_export("r1")}
    assert set(exported) == {"a@example.com", LONG, "nope", "x@"}
    local = exported[LONG]
    assert (local.state, local.status, local.reason, local.source) == (
        "invalid",
        "undeliverable",
        "invalid_email",
        "local",
    )
    assert local.verified_at is not None
    progress = await repo.request_progress("r1")
    assert (progress.emails_by_state, progress.credits_to_spend, progress.credits_spent) == (
        {"batched": 1, "invalid": 3},
        1,
        0,
    )
    assert [row.email async for row in repo.iter_export("r1", {"undeliverable"})] == [LONG, "nope", "x@"]


async def test_answers_from_earlier_requests_are_reused_and_batches_recounted(repo: Repository) -> None:
    await _verified_earlier(repo, "old1@example.com", "old2@example.com")
    chunks = [_rows("Old1@Example.com", "new1@example.com"), _rows("OLD2@example.com", "old1@EXAMPLE.com", start=3)]
    batch_ids = await repo.ingest_request(_request("r2"), chunks)

    assert len(batch_ids) == 1  # the second chunk was all cached: its batch is gone
    batch = await repo.get_batch(batch_ids[0])
    assert batch is not None and (batch.quantity, batch.billable) == (1, 1)
    stored = await repo.get_request("r2")
    assert stored is not None and stored.billable == 1
    exported = [(row.email, row.source, row.state) async for row in repo.iter_export("r2")]
    assert exported == [
        ("Old1@Example.com", "cache", "completed"),
        ("new1@example.com", None, "batched"),
        ("OLD2@example.com", "cache", "completed"),
        ("old1@EXAMPLE.com", "cache", "completed"),
    ]
    assert await repo.cached_keys(["old1@example.com", "new1@example.com"], datetime.now(UTC) - timedelta(1)) == {
        "old1@example.com"
    }


async def test_the_cache_is_off_without_a_since_and_ignores_older_answers(repo: Repository) -> None:
    await _verified_earlier(repo, "old@example.com")
    off = await repo.ingest_request(replace(_request("off"), cache_since=None), [_rows("old@example.com")])
    future = datetime.now(UTC) + timedelta(minutes=1)
    stale = await repo.ingest_request(replace(_request("stale"), cache_since=future), [_rows("old@example.com")])
    assert len(off) == len(stale) == 1


@dataclass(frozen=True)
class Check:
    checked_at: datetime
    available: int

    def refusal(self, billable: int, reserved: int) -> str | None:
        return f"{billable} > {self.available} - {reserved}" if billable > self.available - reserved else None


async def test_a_refused_request_leaves_nothing_and_others_reservations_count(repo: Repository) -> None:
    now = datetime.now(UTC)
    [held] = await repo.ingest_request(_request("held"), [_rows("h1@example.com", "h2@example.com", "h3@example.com")])

    with pytest.raises(CreditsRefused, match="2 > 4 - 3"):
        await repo.ingest_request(
            _request("over", credit_check=Check(now, 4)), [_rows("a@example.com", "b@example.com")]
        )
    assert await repo.get_request("over") is None
    await repo.ingest_request(_request("fits", credit_check=Check(now, 5)), [_rows("a@example.com", "b@example.com")])

    credits = {c.request_id: (c.billable, c.reserved, c.spent) for c in await repo.request_credits()}
    assert credits == {"held": (3, 3, 0), "fits": (2, 2, 0)}

    assert await repo.try_claim_submission(held, 15) == ClaimResult.CLAIMED
    await repo.record_batch_submitted(held, "bouncer-1", 3, 0, BatchState.QUEUED)
    credits = {c.request_id: (c.billable, c.reserved, c.spent) for c in await repo.request_credits()}
    assert credits == {"held": (3, 0, 3), "fits": (2, 2, 0)}
    # Sent after the balance was read, so that balance did not show it: still held against the next request.
    with pytest.raises(CreditsRefused, match="1 > 5 - 5"):
        await repo.ingest_request(_request("late", credit_check=Check(now, 5)), [_rows("c@example.com")])


async def test_a_refusal_mid_list_keeps_the_chunks_before_it_and_the_rest_resumes(repo: Repository) -> None:
    now = datetime.now(UTC)
    chunks = [_rows("a@example.com", "b@example.com"), _rows("c@example.com", "A@example.com", start=3)]
    chunks.append(_rows("d@example.com", "e@example.com", start=5))
    sent: list[int] = []

    async def on_batch(batch_id: int) -> None:
        sent.append(batch_id)

    # The running total: 2, then 3 (a repeat costs nothing), then 5 > 4: the third chunk is refused.
    with pytest.raises(CreditsRefused, match="5 > 4 - 0"):
        await repo.ingest_request(_request("r", credit_check=Check(now, 4)), chunks, on_batch=on_batch)
    stored = await repo.get_request("r")
    assert stored is not None and (stored.status, stored.total_emails, stored.billable) == ("ingesting", 4, 3)
    assert len(sent) == 2  # each stored chunk's batch was handed on: what the credits cover goes on

    # Once credits allow, the same list again stores only the rest.
    rest = await repo.ingest_request(_request("r", credit_check=Check(now, 5)), chunks, resume=True)
    assert len(rest) == 1
    stored = await repo.get_request("r")
    assert stored is not None and (stored.status, stored.total_emails, stored.billable) == ("active", 6, 5)


@pytest.mark.server_engines
async def test_a_credit_check_waits_for_a_reservation_under_way_and_counts_it(
    repo: Repository, storage_url: str
) -> None:
    """Another request's chunk holds the reservation lock and has stored a batch of 25 billable addresses, not yet
    committed. A request checked against a balance of 30 meanwhile must wait for that commit and then see the 25,
    or two requests could both count on one balance (on MariaDB, where the lock was once missing, both passed)."""
    holder = Database(make_engine(storage_url))
    try:
        async with holder.write(RESERVE_LOCK) as conn:
            await take(conn, RESERVE_LOCK)
            owner = {"request_id": "other", "user_id": "u", "priority": 3}
            await conn.execute(insert(RequestModel).values(status="active", **owner))
            await conn.execute(insert(BatchModel).values(status="pending", quantity=25, billable=25, **owner))
            check = Check(datetime.now(UTC), 30)
            emails = [f"m{n}@example.com" for n in range(10)]
            mine = asyncio.create_task(repo.ingest_request(_request("mine", credit_check=check), [_rows(*emails)]))
            await _until(lambda: _waits_for(holder, RESERVE_LOCK, mine))
            assert not mine.done(), "the check ran while another request's reservation was under way"
        with pytest.raises(CreditsRefused, match="10 > 30 - 25"):
            await mine
    finally:
        await holder.engine.dispose()
    assert await repo.get_request("mine") is None


async def _waits_for(db: Database, lock: NamedLock, task: asyncio.Task[Any]) -> bool:
    """Whether `task` has ended, or a session of the database waits for `lock`."""
    if task.done():
        return True
    async with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            query = (
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            return bool(await conn.scalar(text(query)))
        query = "SELECT count(*) FROM information_schema.PROCESSLIST WHERE STATE = 'User lock' AND INFO LIKE :name"
        return bool(await conn.scalar(text(query), {"name": f"%{lock.name}%"}))


async def _until(condition: Callable[[], Awaitable[bool]], patience: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + patience
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "nothing happened"
        await asyncio.sleep(0.05)
