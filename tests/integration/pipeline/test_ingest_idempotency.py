"""Ingest with an idempotency key: a second submission returns the first request, even when both race."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from stage_support import RecordingEnqueuer, Responder, answer

from bouncer_queue.pipeline.context import StageContext
from bouncer_queue.pipeline.ingest import Tracking, add_emails_to_queue


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
