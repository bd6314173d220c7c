"""Bouncer callbacks (pipeline/callbacks.py) over the callback route (ops/callback_route.py), on a real ledger.

A create whose answer is lost leaves its batch `submitting`; the callback Bouncer POSTs to the secret URL that
create carried records the batch's Bouncer id and starts its status check. A token no batch holds, or one used
already, gets 404 and changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from stage_support import BATCH_OK, Responder, new_batch, state

from bouncer_queue.domain import BatchState
from bouncer_queue.ops.callback_route import callback_app
from bouncer_queue.pipeline import jobs
from bouncer_queue.pipeline.callbacks import CALLBACK_PATH, CallbackOutcome, handle_callback
from bouncer_queue.pipeline.context import StageContext
from bouncer_queue.pipeline.outcomes import Defer
from bouncer_queue.pipeline.submit import create_batch

BASE = "https://bq.example.com"


def lost_answer(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("no answer", request=request)


def with_callbacks(world: Callable[[Responder], StageContext], responder: Responder) -> StageContext:
    ctx = world(responder)
    ctx.policy = dataclasses.replace(ctx.policy, callback_base_url=BASE, submit_grace_ms=0)
    return ctx


def callback_token(ctx: StageContext) -> str:
    [request] = ctx.calls  # type: ignore[attr-defined]
    [url] = parse_qs(urlsplit(str(request.url)).query)["callback"]
    assert url.startswith(f"{BASE}{CALLBACK_PATH}/")
    return url.rpartition("/")[2]


async def post(ctx: StageContext, token: str, body: object) -> httpx.Response:
    app = callback_app(lambda t, b: handle_callback(ctx, t, b))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://listener") as client:
        return await client.post(f"{CALLBACK_PATH}/{token}", json=body)


async def test_a_lost_create_answer_waits_for_the_callback_which_resolves_it(world) -> None:  # type: ignore[no-untyped-def]
    ctx = with_callbacks(world, lost_answer)
    batch_id = await new_batch(ctx)
    with pytest.raises(Defer, match="create answer lost"):
        await create_batch(ctx, {"batch_id": batch_id})
    assert await state(ctx, batch_id) == BatchState.SUBMITTING
    with pytest.raises(Defer, match="waiting for Bouncer's callback"):
        await create_batch(ctx, {"batch_id": batch_id})  # the job, run again, keeps waiting

    response = await post(ctx, callback_token(ctx), {**BATCH_OK, "status": "completed"})
    assert (response.status_code, response.json()) == (200, {"outcome": "resolved"})
    batch = await ctx.repo.get_batch(batch_id)
    assert batch is not None and (batch.status, batch.bouncer_batch_id) == (BatchState.QUEUED, BATCH_OK["batchId"])
    check = jobs.check_status(batch_id, "r1", batch.priority, 0, 0)
    assert check in ctx.enqueuer.jobs  # type: ignore[attr-defined]
    assert (check.queue, check.job_id, None) in ctx.enqueuer.promoted  # type: ignore[attr-defined]

    await create_batch(ctx, {"batch_id": batch_id})  # the waiting create job now just ends
    assert len(ctx.calls) == 1  # type: ignore[attr-defined]


async def test_unknown_and_reused_tokens_get_404_and_change_nothing(world) -> None:  # type: ignore[no-untyped-def]
    ctx = with_callbacks(world, lost_answer)
    batch_id = await new_batch(ctx)
    with pytest.raises(Defer):
        await create_batch(ctx, {"batch_id": batch_id})
    assert (await post(ctx, "not-a-token", BATCH_OK)).status_code == 404
    assert await state(ctx, batch_id) == BatchState.SUBMITTING

    token = callback_token(ctx)
    assert (await post(ctx, token, {"no": "batch id"})).status_code == 400
    assert await state(ctx, batch_id) == BatchState.SUBMITTING
    assert (await post(ctx, token, BATCH_OK)).status_code == 200
    assert (await post(ctx, token, {**BATCH_OK, "batchId": "b" * 24})).status_code == 404
    batch = await ctx.repo.get_batch(batch_id)
    assert batch is not None and batch.bouncer_batch_id == BATCH_OK["batchId"]


async def test_a_callback_wakes_the_status_check_of_a_batch_already_at_bouncer(world) -> None:  # type: ignore[no-untyped-def]
    ctx = with_callbacks(world, lambda request: httpx.Response(200, json=BATCH_OK))
    batch_id = await new_batch(ctx)
    await create_batch(ctx, {"batch_id": batch_id})
    assert await state(ctx, batch_id) == BatchState.QUEUED
    assert await handle_callback(ctx, callback_token(ctx), BATCH_OK) == CallbackOutcome.WOKEN
    assert await handle_callback(ctx, callback_token(ctx), BATCH_OK) == CallbackOutcome.NOT_FOUND


async def test_without_a_callback_url_a_lost_answer_is_dead_lettered_and_no_url_is_sent(world) -> None:  # type: ignore[no-untyped-def]
    from bouncer_queue.pipeline.outcomes import PermanentFailure

    ctx = world(lost_answer)
    batch_id = await new_batch(ctx)
    with pytest.raises(PermanentFailure, match="SubmissionOutcomeUnknown"):
        await create_batch(ctx, {"batch_id": batch_id})
    [request] = ctx.calls  # type: ignore[attr-defined]
    assert "callback" not in str(request.url)
