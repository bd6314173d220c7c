"""The repository on every engine: ingest, batch lifecycle, results, exports, dead letters and health."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from bouncer_queue.bouncer.schemas import result_rows
from bouncer_queue.domain import BatchState, Priority, RequestState
from bouncer_queue.errors import StorageError
from bouncer_queue.lists.export import result_flags, row_flags
from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.ingest import IngestStopped
from bouncer_queue.storage.records import EmailRow, HealthMetric, RequestInfo, ResultRow
from bouncer_queue.storage.repository import ClaimResult, Repository
from bouncer_queue.storage.tables import BatchModel, QueueModel, ResultModel

REQUEST = RequestInfo(request_id="req-1", user_id="user-1", priority=Priority.HIGH, delay_ms=250)


def rows(count: int, start: int = 0) -> list[EmailRow]:
    return [
        EmailRow(email=f"User{i}@Example.com", name=f"User {i}", row_number=i + 1, extra={"city": f"c{i}"})
        for i in range(start, start + count)
    ]


def chunked(items: Sequence[EmailRow], size: int) -> Iterator[Sequence[EmailRow]]:
    for at in range(0, len(items), size):
        yield items[at : at + size]


def result(email: str, status: str = "deliverable", score: int = 90) -> ResultRow:
    return ResultRow(email=email, status=status, reason="accepted_email", score=score, raw={"email": email})


async def ingest(repo: Repository, count: int = 5, size: int = 2, request: RequestInfo = REQUEST) -> list[int]:
    return await repo.ingest_request(request, chunked(rows(count), size))


async def test_ingest_creates_one_pending_batch_per_chunk(repo: Repository) -> None:
    batch_ids = await ingest(repo, count=5, size=2)

    assert len(batch_ids) == 3
    batches = [await repo.get_batch(b) for b in batch_ids]
    assert [b.quantity for b in batches if b] == [2, 2, 1]
    first = batches[0]
    assert first is not None
    assert (first.status, first.priority, first.request_id, first.user_id) == (
        BatchState.PENDING,
        Priority.HIGH,
        "req-1",
        "user-1",
    )
    assert first.created_at is not None and first.created_at.tzinfo is not None
    emails = await repo.batch_emails(batch_ids[1])
    assert [(e.email, e.name) for e in emails] == [("User2@Example.com", "User 2"), ("User3@Example.com", "User 3")]
    progress = await repo.request_progress("req-1")
    assert (progress.emails_total, progress.emails_by_state) == (5, {"batched": 5})
    assert (progress.batches_total, progress.batches_by_state) == (3, {"pending": 3})
    assert await repo.request_user("req-1") == "user-1"
    assert await repo.request_user("nobody") is None


async def test_ingest_records_the_request_whole_and_finds_it_again(repo: Repository) -> None:
    request = RequestInfo(
        request_id="req-9",
        user_id="user-9",
        priority=Priority.LOW,
        source="leads.csv",
        fingerprint="f" * 64,
        idempotency_key="key-9",
        webhook_url="https://example.com/hook",
        options={"no_cache": True},
    )
    await ingest(repo, count=5, size=2, request=request)

    record = await repo.get_request("req-9")
    assert record is not None
    assert (record.status, record.total_emails, record.batch_count) == (RequestState.ACTIVE, 5, 3)
    assert (record.user_id, record.priority, record.source) == ("user-9", Priority.LOW, "leads.csv")
    assert (record.webhook_url, record.options, record.finished_at) == (
        "https://example.com/hook",
        {"no_cache": True},
        None,
    )
    assert await repo.find_request_by_fingerprint("f" * 64) == record
    assert await repo.find_request_by_idempotency_key("key-9") == record
    assert await repo.find_request_by_fingerprint("0" * 64) is None
    assert await repo.get_request("nobody") is None

    await repo.set_request_state("req-9", RequestState.FINISHED)
    finished = await repo.get_request("req-9")
    assert finished is not None and finished.status == RequestState.FINISHED and finished.finished_at is not None


async def test_a_request_id_or_idempotency_key_is_stored_once(repo: Repository) -> None:
    await ingest(repo, count=2, size=2, request=RequestInfo("req-a", "u", idempotency_key="k"))

    with pytest.raises(StorageError):
        await ingest(repo, count=2, size=2, request=RequestInfo("req-a", "u"))
    with pytest.raises(StorageError):
        await ingest(repo, count=2, size=2, request=RequestInfo("req-b", "u", idempotency_key="k"))
    assert (await repo.request_progress("req-a")).emails_total == 2
    assert await repo.get_request("req-b") is None


async def test_requests_are_listed_newest_first_with_filters_and_pages(repo: Repository) -> None:
    for n in range(4):
        await ingest(repo, count=1, size=1, request=RequestInfo(f"r{n}", "alice" if n % 2 else "bob"))
    await repo.set_request_state("r0", RequestState.CANCELLED)

    assert [r.request_id for r in await repo.list_requests()] == ["r3", "r2", "r1", "r0"]
    assert [r.request_id for r in await repo.list_requests(limit=2, offset=1)] == ["r2", "r1"]
    assert [r.request_id for r in await repo.list_requests(user_id="alice")] == ["r3", "r1"]
    assert [r.request_id for r in await repo.list_requests(status=RequestState.CANCELLED)] == ["r0"]


async def test_ingest_accepts_an_async_iterable(repo: Repository) -> None:
    async def source() -> AsyncIterator[Sequence[EmailRow]]:
        for chunk in chunked(rows(3), 2):
            yield chunk

    assert len(await repo.ingest_request(REQUEST, source())) == 2


async def test_batch_progress_counts_the_open_batches_addresses_from_the_batches_alone(repo: Repository) -> None:
    first, second, _ = await ingest(repo, count=5, size=2)
    progress = await repo.batch_progress("req-1")
    assert (progress.batches_by_state, progress.open_quantity, progress.open_batches) == ({"pending": 3}, 5, 3)

    await repo.try_claim_submission(first, 5)
    await repo.record_batch_submitted(first, "bb-1", 2, 0, BatchState.QUEUED)
    await repo.record_batch_completed(first, credits_used=2)
    await repo.store_results(first, [result("user0@example.com"), result("user1@example.com")])
    await repo.mark_batch_dead(second, "InsufficientCredits", "no credits left")

    progress = await repo.batch_progress("req-1")
    assert progress.batches_by_state == {"downloaded": 1, "dead": 1, "pending": 1}
    assert (progress.open_quantity, progress.open_batches, progress.credits_spent) == (1, 1, 2)
    assert (await repo.batch_progress("no-such-request")).open_batches == 0


async def test_an_iterable_failing_mid_list_leaves_the_stored_chunks_resumable(repo: Repository) -> None:
    def failing() -> Iterator[Sequence[EmailRow]]:
        yield rows(2)
        yield rows(2, start=2)
        raise ValueError("broken CSV at row 5")

    with pytest.raises(ValueError, match="broken CSV"):
        await repo.ingest_request(REQUEST, failing())

    stored = await repo.get_request("req-1")
    assert stored is not None and (stored.status, stored.total_emails, stored.batch_count) == ("ingesting", 4, 2)
    assert not (await repo.request_progress("req-1")).done
    assert await repo.finish_requests() == 0  # an ingesting request is never finished
    # Stored again, the rows up to the highest stored row number are skipped, the rest stored once.
    assert len(await repo.ingest_request(REQUEST, chunked(rows(5), 2), resume=True)) == 1
    resumed = await repo.get_request("req-1")
    assert resumed is not None and (resumed.status, resumed.total_emails, resumed.batch_count) == ("active", 5, 3)
    exported = [row.row_number async for row in repo.iter_export("req-1")]
    assert exported == [1, 2, 3, 4, 5]


async def test_a_list_failing_before_any_batch_stores_nothing(repo: Repository) -> None:
    def failing() -> Iterator[Sequence[EmailRow]]:
        yield [EmailRow("", row_number=1, skipped="no address")]
        raise ValueError("broken CSV at row 2")

    with pytest.raises(ValueError, match="broken CSV"):
        await repo.ingest_request(REQUEST, failing())

    progress = await repo.request_progress("req-1")
    assert (progress.emails_total, progress.batches_total) == (0, 0)
    assert await repo.get_request("req-1") is None


async def test_each_chunk_commits_before_the_next_is_read(repo: Repository) -> None:
    seen: list[tuple[int, str, int]] = []

    async def on_batch(batch_id: int) -> None:
        request = await repo.get_request("req-1")
        assert request is not None
        seen.append((batch_id, request.status, request.total_emails))

    batch_ids = await repo.ingest_request(REQUEST, chunked(rows(5), 2), on_batch=on_batch)

    assert seen == [(batch_ids[0], "ingesting", 2), (batch_ids[1], "ingesting", 4), (batch_ids[2], "ingesting", 5)]
    assert (await repo.get_request("req-1")).status == "active"  # type: ignore[union-attr]


async def test_a_cancel_stops_the_list_at_the_next_chunk(repo: Repository) -> None:
    async def cancel(batch_id: int) -> None:
        await repo.set_request_state("req-1", RequestState.CANCELLED)
        await repo.cancel_unsent_batches("req-1")

    with pytest.raises(IngestStopped, match="cancelled"):
        await repo.ingest_request(REQUEST, chunked(rows(5), 2), on_batch=cancel)

    request = await repo.get_request("req-1")
    assert request is not None and (request.status, request.total_emails) == ("cancelled", 2)
    assert (await repo.request_progress("req-1")).emails_by_state == {"cancelled": 2}


async def test_batch_lifecycle_from_claim_to_download(repo: Repository) -> None:
    [batch_id] = await ingest(repo, count=3, size=3)
    assert await repo.oldest_pending_batch_created_at() is not None

    assert await repo.try_claim_submission(batch_id, max_in_flight=1) == ClaimResult.CLAIMED
    assert await repo.try_claim_submission(batch_id, max_in_flight=1) == ClaimResult.NOT_PENDING
    assert await repo.in_flight_count() == 1
    await repo.record_batch_submitted(batch_id, "bb-1", quantity=3, duplicates=0, status=BatchState.QUEUED)
    await repo.record_batch_progress(batch_id, BatchState.PROCESSING, processed=2)
    batch = await repo.get_batch(batch_id)
    assert batch is not None
    assert (batch.status, batch.processed, batch.attempts, batch.bouncer_batch_id) == ("processing", 2, 1, "bb-1")
    assert batch.submitted_at is not None
    assert (await repo.request_progress("req-1")).emails_by_state == {"submitted": 3}

    await repo.record_batch_completed(batch_id, credits_used=3)
    totals = await repo.store_results(batch_id, [result("user0@example.com"), result("USER1@EXAMPLE.COM", "risky")])

    assert (totals.stored, totals.emails_completed, totals.emails_missing) == (2, 2, 1)
    batch = await repo.get_batch(batch_id)
    assert batch is not None
    assert (batch.status, batch.credits_used) == (BatchState.DOWNLOADED, 3)
    assert batch.downloaded_at is not None and batch.completed_at is not None
    progress = await repo.request_progress("req-1")
    assert progress.emails_by_state == {"completed": 2, "failed": 1}
    assert progress.done
    assert await repo.in_flight_count() == 0
    # A late poll must not resurrect a finished batch.
    await repo.record_batch_progress(batch_id, BatchState.PROCESSING, processed=1)
    assert (await repo.get_batch(batch_id)).status == BatchState.DOWNLOADED  # type: ignore[union-attr]


async def test_claims_stop_at_max_in_flight_and_release_frees_a_slot(repo: Repository) -> None:
    first, second, third = await ingest(repo, count=3, size=1)

    assert await repo.try_claim_submission(first, 2) == ClaimResult.CLAIMED
    assert await repo.try_claim_submission(second, 2) == ClaimResult.CLAIMED
    assert await repo.try_claim_submission(third, 2) == ClaimResult.FULL
    assert await repo.try_claim_submission(999_999, 2) == ClaimResult.NOT_PENDING

    await repo.release_submission(first, "connection reset before the request was sent")
    released = await repo.get_batch(first)
    assert released is not None
    assert (released.status, released.last_error) == (
        BatchState.PENDING,
        "connection reset before the request was sent",
    )
    assert await repo.try_claim_submission(third, 2) == ClaimResult.CLAIMED
    assert {b.id for b in await repo.batches_in_states([BatchState.SUBMITTING])} == {second, third}


async def test_store_results_is_idempotent(repo: Repository) -> None:
    [batch_id] = await ingest(repo, count=4, size=4)
    results = [result(f"user{i}@example.com", score=50 + i) for i in range(3)]

    first = await repo.store_results(batch_id, results)
    exported_once = [row async for row in repo.iter_export("req-1")]
    second = await repo.store_results(batch_id, results)
    exported_twice = [row async for row in repo.iter_export("req-1")]

    assert first == second
    assert (first.stored, first.emails_completed, first.emails_missing) == (3, 3, 1)
    # The same rows and answers; only `verified_at` moves to the second download's time.
    assert [r._replace(verified_at=None) for r in exported_once] == [
        r._replace(verified_at=None) for r in exported_twice
    ]
    assert len(exported_twice) == 4

    changed = await repo.store_results(batch_id, [result("user0@example.com", "undeliverable", 0)])
    assert changed.emails_completed == 3
    export = [row async for row in repo.iter_export("req-1", statuses={"undeliverable"})]
    assert [(r.email, r.score) for r in export] == [("User0@Example.com", 0)]


async def test_export_streams_rows_in_order_joined_with_results_and_filtered(repo: Repository) -> None:
    batch_ids = await ingest(repo, count=7, size=3)
    await ingest(repo, count=2, size=2, request=RequestInfo(request_id="other", user_id="u2"))
    await repo.store_results(batch_ids[0], [result("user0@example.com"), result("user2@example.com", "risky")])
    await repo.store_results(batch_ids[2], [result("user6@example.com", "undeliverable")])

    everything = [row async for row in repo.iter_export("req-1")]
    assert [r.row_number for r in everything] == list(range(1, 8))
    assert [r.status for r in everything] == ["deliverable", None, "risky", None, None, None, "undeliverable"]
    assert everything[0].extra == {"city": "c0"}
    assert everything[0].raw == {"email": "user0@example.com"}
    assert [r.state for r in everything[:3]] == ["completed", "failed", "completed"]

    good = [row.email async for row in repo.iter_export("req-1", statuses=["deliverable", "risky"])]
    assert good == ["User0@Example.com", "User2@Example.com"]
    assert [row async for row in repo.iter_export("req-1", statuses=[])] == []


async def test_export_flags_come_from_their_columns_or_else_from_bouncers_object(repo: Repository) -> None:
    [batch_id] = await ingest(repo, count=3, size=3)
    downloaded = {
        "email": "user0@example.com",
        "status": "risky",
        "reason": "low_deliverability",
        "domain": {"name": "example.com", "acceptAll": "yes", "disposable": "no", "free": "no"},
        "account": {"role": "yes", "disabled": "no", "fullMailbox": "no"},
        "dns": {"type": "MX", "record": "mx.example.com", "provider": "acme-mail"},  # no top-level provider
        "score": 40,
        "toxic": "unknown",
        "toxicity": 2,
    }
    flat = {"email": "user1@example.com", "accept_all": "no", "role": "no", "provider": "gmail", "toxicity": 0}
    [from_download] = result_rows(json.dumps([downloaded]))
    await repo.store_results(
        batch_id,
        [from_download, ResultRow(email="user1@example.com", status="deliverable", reason="accepted_email", raw=flat)],
    )

    first, second, third = [row async for row in repo.iter_export("req-1")]

    # A download's flags are all in their columns; Bouncer's object agrees with them, and is the same object.
    assert row_flags(first) == ("yes", "no", "no", "yes", "no", "no", "acme-mail", 2)
    assert tuple(result_flags(first.raw).values()) == row_flags(first)
    assert first.raw == downloaded and type(first.raw) is dict  # the Python API's users get a plain dict
    # Flags given only in the object (a ResultRow without its flag fields): read from it.
    assert row_flags(second) == ("no", None, None, "no", None, None, "gmail", 0)
    assert second.raw == flat
    # No result: no flags, no object.
    assert (row_flags(third), third.raw) == ((None,) * 8, None)


async def test_extra_columns_come_back_exactly_as_ingested(repo: Repository) -> None:
    awkward = {"note": 'say "hi"\\ \n\t', "ville": "Zürich ☃ 🎉", "": "", "n": "1"}
    mixed: dict[str, object] = {"count": 3, "nested": {"a": [1, None]}}
    items = [
        EmailRow(email="a@example.com", row_number=1, extra=awkward),
        EmailRow(email="b@example.com", row_number=2, extra=mixed),  # type: ignore[arg-type]
        EmailRow(email="c@example.com", row_number=3),
    ]
    await repo.ingest_request(REQUEST, [items])

    exported = [row.extra async for row in repo.iter_export("req-1")]
    assert exported == [awkward, mixed, None]


async def test_failed_and_dead_batches_can_be_reset_for_retry(repo: Repository) -> None:
    first, second = await ingest(repo, count=4, size=2)
    await repo.try_claim_submission(first, 5)
    await repo.record_batch_submitted(first, "bb-9", 2, 0, BatchState.QUEUED)
    await repo.mark_batch_failed(first, "Bouncer said failed")
    await repo.mark_batch_dead(second, "InsufficientCredits", "no credits left")

    dead = await repo.get_batch(second)
    assert dead is not None
    assert (dead.status, dead.last_error) == (BatchState.DEAD, "InsufficientCredits: no credits left")
    assert (await repo.request_progress("req-1")).emails_by_state == {"submitted": 2, "dead": 2}

    await repo.reset_batch_for_retry(first)
    await repo.reset_batch_for_retry(second)
    retried = await repo.get_batch(first)
    assert retried is not None
    assert (retried.status, retried.retries, retried.bouncer_batch_id) == (BatchState.PENDING, 1, None)
    assert (await repo.request_progress("req-1")).emails_by_state == {"batched": 4}
    # Resetting a batch that is not failed or dead does nothing.
    await repo.reset_batch_for_retry(first)
    assert (await repo.get_batch(first)).retries == 1  # type: ignore[union-attr]


async def test_dead_letters_are_listed_until_replayed(repo: Repository) -> None:
    first = await repo.add_dead_letter("batch-download", "download", {"batch_id": 7}, "ServerError", "500", 5, 7, "r")
    second = await repo.add_dead_letter("cleanup-tasks", "cleanup", {}, "RuntimeError", "boom", 1)

    assert [d.id for d in await repo.list_dead_letters()] == [second, first]
    letter = await repo.get_dead_letter(first)
    assert letter is not None
    assert (letter.payload, letter.batch_id, letter.request_id, letter.attempts) == ({"batch_id": 7}, 7, "r", 5)
    await repo.mark_dead_letter_replayed(first)
    assert [d.id for d in await repo.list_dead_letters()] == [second]
    replayed = await repo.get_dead_letter(first)
    assert replayed is not None and replayed.replayed_at is not None
    assert len(await repo.list_dead_letters(include_replayed=True, limit=1)) == 1
    assert await repo.get_dead_letter(123_456) is None


async def test_health_metrics_are_recorded_listed_and_pruned(repo: Repository) -> None:
    old = datetime.now(UTC) - timedelta(days=10)
    await repo.record_health_metric(HealthMetric(status="healthy", snapshot={"a": 1}, recorded_at=old), {})
    newest = await repo.record_health_metric(
        HealthMetric(status="degraded", snapshot={"backlog": 2000}, alerts=("backlog",)),
        {"backlog": 2000, "memory_mb": 12.5, "credits_left": None},
    )

    recent = await repo.recent_health_metrics()
    assert (recent[0].id, recent[0].status, recent[0].alerts) == (newest, "degraded", ("backlog",))
    assert recent[0].snapshot == {"backlog": 2000}
    assert await repo.prune_health_metrics(datetime.now(UTC) - timedelta(days=7)) == 1
    assert len(await repo.recent_health_metrics()) == 1
    with pytest.raises(ValueError, match="unknown health metric"):
        await repo.record_health_metric(HealthMetric(status="healthy", snapshot={}), {"nope": 1.0})


async def test_ping_measures_latency(repo: Repository) -> None:
    assert await repo.ping() >= 0


async def test_a_repeated_address_is_sent_once_yet_every_row_gets_its_result(repo: Repository) -> None:
    # Chunk 1 repeats an address within itself; chunk 2 repeats chunk 1's; chunk 3 is only repeats.
    spellings = [["a@x.com", "b@x.com", "A@X.com"], ["c@x.com", "B@x.com"], ["C@x.COM", "a@x.com"]]
    chunks = [[EmailRow(email=e, row_number=i) for i, e in enumerate(chunk)] for chunk in spellings]

    batch_ids = await repo.ingest_request(REQUEST, chunks)

    assert len(batch_ids) == 2  # the third batch held only repeats, so it is gone
    sent = [[e.email for e in await repo.batch_emails(b)] for b in batch_ids]
    assert sent == [["a@x.com", "b@x.com"], ["c@x.com"]]
    assert [(await repo.get_batch(b)).quantity for b in batch_ids] == [5, 2]  # type: ignore[union-attr]
    request = await repo.get_request(REQUEST.request_id)
    assert request is not None and (request.total_emails, request.batch_count) == (7, 2)
    for batch_id, emails in zip(batch_ids, sent, strict=True):
        await repo.store_results(batch_id, [result(e) for e in emails])
    exported = [(row.email, row.state, row.status) async for row in repo.iter_export(REQUEST.request_id)]
    assert len(exported) == 7
    assert {(state, status) for _, state, status in exported} == {("completed", "deliverable")}


async def test_concurrent_stores_of_the_same_addresses_do_not_fail(repo_factory: Any) -> None:
    # Two downloads holding the same addresses in opposite orders, stored at once from two engines: rows are
    # written in one key order (and a conflict would be re-run), so neither store fails.
    first, second = repo_factory(), repo_factory()
    batch_ids = await ingest(first, count=4_000, size=2_000)
    results = [result(f"user{i}@example.com") for i in range(4_000)]
    for _ in range(3):
        await asyncio.gather(
            first.store_results(batch_ids[0], results), second.store_results(batch_ids[1], results[::-1])
        )
    assert (await first.request_progress("req-1")).emails_by_state == {"completed": 4_000}


async def test_a_request_is_finished_once_every_batch_is_downloaded_or_dead(repo: Repository) -> None:
    first, second = await ingest(repo, count=4, size=2)
    await ingest(repo, count=2, size=2, request=RequestInfo(request_id="other", user_id="u2"))
    await repo.store_results(first, [result("user0@example.com"), result("user1@example.com")])
    assert await repo.finish_requests() == 0

    await repo.mark_batch_dead(second, "BadRequest", "refused")
    assert await repo.finish_requests("other") == 0
    assert await repo.finish_requests(REQUEST.request_id) == 1
    request = await repo.get_request(REQUEST.request_id)
    assert request is not None and request.status == RequestState.FINISHED and request.finished_at is not None
    assert (await repo.get_request("other")).status == RequestState.ACTIVE  # type: ignore[union-attr]
    assert await repo.finish_requests() == 0  # already finished: nothing changes


async def test_a_resumed_list_still_sends_a_repeat_of_a_row_stored_before_the_break_once(repo: Repository) -> None:
    listing = [EmailRow(email=e, row_number=n) for n, e in enumerate(["a@x.com", "b@x.com", "B@X.com", "c@x.com"], 1)]

    def broken() -> Iterator[Sequence[EmailRow]]:
        yield listing[:2]
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        await repo.ingest_request(REQUEST, broken())
    [first] = [b.id for b in await repo.request_batches("req-1")]
    await repo.store_results(first, [result("a@x.com"), result("b@x.com")])  # downloaded meanwhile

    rest = await repo.ingest_request(REQUEST, chunked(listing, 2), resume=True)

    assert [[e.email for e in await repo.batch_emails(b)] for b in rest] == [["c@x.com"]]
    exported = [(row.email, row.state, row.status) async for row in repo.iter_export("req-1")]
    assert exported[2] == ("B@X.com", "completed", "deliverable")  # settled from the stored result at once


async def test_times_written_in_bulk_read_back_and_compare_as_the_orm_s_do(repo: Repository, storage_url: str) -> None:
    # Ingest and results write their times through the engine's bulk path (on SQLite as text made once a chunk):
    # they must read back as the ORM's do, and equal in SQL the time the ORM wrote in the same transaction.
    before = datetime.now(UTC)
    [batch_id] = await ingest(repo, count=3, size=5)
    await repo.store_results(batch_id, [result("user0@example.com")])
    engine = make_engine(storage_url)
    try:
        async with engine.connect() as conn:
            queue = (await conn.execute(select(QueueModel.created_at, QueueModel.updated_at))).all()
            [verified_at] = (await conn.execute(select(ResultModel.verified_at))).scalars().all()
            same_as_batch = select(func.count()).where(
                QueueModel.batch_id == BatchModel.id, QueueModel.created_at == BatchModel.created_at
            )
            assert await conn.scalar(same_as_batch) == 3
            [downloaded_at] = (await conn.execute(select(BatchModel.downloaded_at))).scalars().all()
    finally:
        await engine.dispose()
    times = [t for row in queue for t in row]
    assert all(t.tzinfo is not None and before - timedelta(seconds=1) <= t <= datetime.now(UTC) for t in times)
    assert verified_at == downloaded_at  # one `now` for the results and their batch
