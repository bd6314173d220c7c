"""Ingest as the HTTP API uses it: an idempotency key returns the first request (even when two race), an upload
read in a thread (an async source) is stored whole, and a list broken half way keeps its stored part, resumable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from stage_support import RecordingEnqueuer, Responder, answer

from bouncer_queue.domain import RequestState
from bouncer_queue.errors import InputError
from bouncer_queue.interfaces.http.submissions import off_the_loop
from bouncer_queue.lists import read_list
from bouncer_queue.pipeline.context import StageContext
from bouncer_queue.pipeline.ingest import Tracking, add_emails_to_queue
from bouncer_queue.pipeline.precedence import Precedence


async def test_the_same_key_returns_the_stored_request_without_reading_the_list(
    world: Callable[[Responder], StageContext],
) -> None:
    ctx = world(answer(200, {}))
    tracking = Tracking(idempotency_key="k-1", webhook_url="https://hooks.example/x")
    first = await add_emails_to_queue(
        ctx.repo, ctx.enqueuer, ["a@example.com"], user_id="u", source="api", tracking=tracking
    )

    def unread() -> list[str]:
        raise AssertionError("the list of a repeated key must not be read")

    again = await add_emails_to_queue(ctx.repo, ctx.enqueuer, iter(unread, None), user_id="u", tracking=tracking)
    assert (again.request_id, again.existing, first.existing) == (first.request_id, True, False)
    stored = await ctx.repo.get_request(first.request_id)
    assert stored is not None and (stored.source, stored.webhook_url) == ("api", "https://hooks.example/x")


async def test_two_first_submissions_with_one_key_at_once_store_one_request(
    world: Callable[[Responder], StageContext],
) -> None:
    ctx = world(answer(200, {}))
    enqueuer = RecordingEnqueuer()
    tracking = Tracking(idempotency_key="race")
    results = await asyncio.gather(
        *(
            add_emails_to_queue(ctx.repo, enqueuer, [f"{i}@example.com"], user_id="u", tracking=tracking)
            for i in range(2)
        )
    )
    assert len({r.request_id for r in results}) == 1 and sorted(r.existing for r in results) == [False, True]
    assert len(enqueuer.jobs) == 1


async def test_an_upload_read_off_the_loop_is_stored_whole_and_its_errors_come_through(
    world: Callable[[Responder], StageContext], tmp_path: Path
) -> None:
    ctx = world(answer(200, {}))
    path = tmp_path / "list.csv"
    path.write_text("email,team\n" + "".join(f"u{i}@example.com,t{i}\n" for i in range(4_500)), encoding="utf-8")
    rows = off_the_loop(read_list(path), step=1_000)
    added = await add_emails_to_queue(ctx.repo, ctx.enqueuer, rows, user_id="u", batch_size=2_000)
    assert (added.total_emails, added.batch_count) == (4_500, 3)
    exported = [row async for row in ctx.repo.iter_export(added.request_id)]
    assert exported[-1].email == "u4499@example.com" and exported[-1].extra == {
        "email": "u4499@example.com",
        "team": "t4499",
    }

    path.write_text("email\n" + "a@example.com\n" * 3 + '"unterminated\n', encoding="utf-8")
    with pytest.raises(InputError):
        await add_emails_to_queue(ctx.repo, ctx.enqueuer, off_the_loop(read_list(path)), user_id="u")


async def test_an_empty_list_stores_nothing_and_leaves_its_key_free(world: Callable[[Responder], StageContext]) -> None:
    ctx = world(answer(200, {}))
    tracking = Tracking(idempotency_key="first-try")
    with pytest.raises(InputError, match="no email addresses"):
        await add_emails_to_queue(ctx.repo, ctx.enqueuer, [], user_id="u", tracking=tracking)
    assert await ctx.repo.list_requests() == []
    retried = await add_emails_to_queue(ctx.repo, ctx.enqueuer, ["a@example.com"], user_id="u", tracking=tracking)
    assert not retried.existing and retried.total_emails == 1


async def test_a_list_broken_half_way_keeps_what_was_stored_and_the_same_id_resumes_it(
    world: Callable[[Responder], StageContext],
) -> None:
    ctx = world(answer(200, {}))
    enqueuer = RecordingEnqueuer()
    emails = [f"u{i}@example.com" for i in range(5)]

    def broken() -> Iterator[str]:
        yield from emails[:3]
        raise InputError("row 4: unterminated quote")

    with pytest.raises(InputError, match=r"^row 4: unterminated quote; the 2 addresses before it are stored as req"):
        await add_emails_to_queue(ctx.repo, enqueuer, broken(), user_id="u", request_id="req", batch_size=2)
    assert len(enqueuer.jobs) == 1  # the first chunk's batch went out while the list was read
    stored = await ctx.repo.get_request("req")
    assert stored is not None and stored.status == RequestState.INGESTING

    resumed = await add_emails_to_queue(ctx.repo, enqueuer, emails, user_id="u", request_id="req", batch_size=2)
    assert (resumed.existing, resumed.total_emails, resumed.batch_count) == (False, 5, 3)
    assert len(enqueuer.jobs) == 3
    assert [row.email async for row in ctx.repo.iter_export("req")] == emails
    again = await add_emails_to_queue(ctx.repo, enqueuer, emails, user_id="u", request_id="req")
    assert again.existing and len(enqueuer.jobs) == 3


async def test_a_list_broken_in_its_first_chunk_gives_the_error_as_it_was(
    world: Callable[[Responder], StageContext],
) -> None:
    ctx = world(answer(200, {}))

    def broken() -> Iterator[str]:
        yield "a@example.com"
        raise InputError("row 2: unterminated quote")

    with pytest.raises(InputError, match=r"^row 2: unterminated quote$"):
        await add_emails_to_queue(ctx.repo, ctx.enqueuer, broken(), user_id="u", batch_size=2)
    assert await ctx.repo.list_requests() == []


async def test_the_next_chunk_waits_while_a_create_of_this_process_is_under_way(
    world: Callable[[Responder], StageContext],
) -> None:
    # verify and serve run workers in the process that stores the list: a create under way (holding the
    # precedence) reaches Bouncer before the next chunk is read and stored.
    ctx = world(answer(200, {}))
    precedence = Precedence(max_wait_seconds=3_600)
    enqueuer = RecordingEnqueuer()
    read: list[str] = []

    def emails() -> Iterator[str]:
        for i in range(6):
            read.append(f"{i}@example.com")
            yield read[-1]

    async with precedence.urgent():
        storing = asyncio.create_task(
            add_emails_to_queue(
                ctx.repo,
                enqueuer,
                emails(),
                user_id="u",
                batch_size=2,
                read_ahead=False,
                between_chunks=precedence.after_urgent,
            )
        )
        while not enqueuer.jobs:
            await asyncio.sleep(0)
        for _ in range(50):  # every turn the storing task could take to read on
            await asyncio.sleep(0)
        assert (len(enqueuer.jobs), len(read)) == (1, 2) and not storing.done()
    added = await storing
    assert (added.batch_count, len(enqueuer.jobs), len(read)) == (3, 3, 6)
