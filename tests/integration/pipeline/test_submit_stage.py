"""The create-batch stage's money rules, against a real SQLite ledger and limiter and the real Bouncer client.

Bouncer's answers come from an httpx.MockTransport so each error class can be produced exactly; the same
behaviours are exercised against the simulator over real HTTP in tests/acceptance. What is checked here is what
the stage does to the ledger: a batch is never left in a state that could lead to paying for it twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from stage_support import BATCH_OK, Responder, answer, new_batch, state

from bouncer_queue.bouncer import BouncerUnavailable, ServerError
from bouncer_queue.domain import BatchState, Priority, RequestState
from bouncer_queue.errors import StorageError
from bouncer_queue.pipeline import jobs
from bouncer_queue.pipeline.cancel import cancel_request
from bouncer_queue.pipeline.context import StageContext
from bouncer_queue.pipeline.dispatch import Dispatcher
from bouncer_queue.pipeline.outcomes import Defer, PermanentFailure
from bouncer_queue.pipeline.submit import create_batch
from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.ratelimit import Decision
from bouncer_queue.storage.records import EmailRow, RequestInfo
from bouncer_queue.storage.tables import Base


class NoTokens:
    async def acquire(self, budgets: object, endpoint: str) -> Decision:
        return Decision(allowed=False, wait_ms=1_000)

    async def peek(self, budgets: object) -> Decision:
        return Decision(allowed=False, wait_ms=1_000)

    async def answered(self, decision: Decision) -> None:
        return None

    async def refund(self, decision: Decision) -> None:
        return None


async def test_a_created_batch_is_recorded_and_watched(world: Callable[[Responder], StageContext]) -> None:
    ctx = world(answer(200, BATCH_OK))
    batch_id = await new_batch(ctx)
    await create_batch(ctx, {"batch_id": batch_id})
    batch = await ctx.repo.get_batch(batch_id)
    assert batch is not None and batch.status == BatchState.QUEUED and batch.bouncer_batch_id == "a" * 24
    assert [j.name for j in ctx.enqueuer.jobs] == ["check-batch-status"]  # type: ignore[attr-defined]


async def test_a_redelivered_job_for_a_created_batch_sends_nothing(world: Callable[[Responder], StageContext]) -> None:
    ctx = world(answer(200, BATCH_OK))
    batch_id = await new_batch(ctx)
    await create_batch(ctx, {"batch_id": batch_id})
    await create_batch(ctx, {"batch_id": batch_id})
    assert len(ctx.calls) == 1  # type: ignore[attr-defined]


async def test_a_lost_response_is_never_resubmitted(world: Callable[[Responder], StageContext]) -> None:
    def lost(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    ctx = world(lost)
    batch_id = await new_batch(ctx)
    with pytest.raises(PermanentFailure) as failure:
        await create_batch(ctx, {"batch_id": batch_id})
    assert failure.value.error_class == "SubmissionOutcomeUnknown"
    assert await state(ctx, batch_id) == BatchState.SUBMITTING
    # A copy of the job right away (after a Redis loss, say) waits: the first call might still be running.
    with pytest.raises(Defer, match="may still be under way"):
        await create_batch(ctx, {"batch_id": batch_id})
    # Once no create call can still be running, the verdict is final: dead-letter, never resend.
    ctx.clock = lambda: time.time() + ctx.policy.submit_grace_ms / 1000 + 1
    with pytest.raises(PermanentFailure, match="SubmissionOutcomeUnknown"):
        await create_batch(ctx, {"batch_id": batch_id})
    assert len(ctx.calls) == 1  # type: ignore[attr-defined]


async def test_a_request_that_never_left_is_released_and_retried(world: Callable[[Responder], StageContext]) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    ctx = world(refused)
    batch_id = await new_batch(ctx)
    with pytest.raises(BouncerUnavailable) as error:
        await create_batch(ctx, {"batch_id": batch_id})
    assert error.value.request_sent is False and error.value.retryable
    assert await state(ctx, batch_id) == BatchState.PENDING


async def test_a_429_defers_and_releases_the_slot(world: Callable[[Responder], StageContext]) -> None:
    ctx = world(answer(429, {"status": 429, "error": "Too Many Requests", "message": "too many requests"}))
    batch_id = await new_batch(ctx)
    with pytest.raises(Defer):
        await create_batch(ctx, {"batch_id": batch_id})
    assert await state(ctx, batch_id) == BatchState.PENDING
    assert await ctx.repo.in_flight_count() == 0


async def test_a_402_holds_the_batch_pending_and_closes_the_credits_gate(
    world: Callable[[Responder], StageContext],
) -> None:
    ctx = world(answer(402, {"status": "402", "error": "Payment Required", "message": "1 credits left"}))
    first, second = await new_batch(ctx, "r1"), await new_batch(ctx, "r2")
    with pytest.raises(Defer, match="credits"):
        await create_batch(ctx, {"batch_id": first})
    assert await state(ctx, first) == BatchState.PENDING  # resubmitted after a top-up, never dead-lettered
    assert await ctx.credits_gate.is_closed()
    with pytest.raises(Defer, match="credits"):
        await create_batch(ctx, {"batch_id": second})
    assert len(ctx.calls) == 1  # type: ignore[attr-defined]


async def test_a_5xx_is_retryable_and_other_4xx_fail_at_once(world: Callable[[Responder], StageContext]) -> None:
    ctx = world(answer(503, {"status": 503, "error": "Service Unavailable", "message": "try later"}))
    batch_id = await new_batch(ctx)
    with pytest.raises(ServerError):
        await create_batch(ctx, {"batch_id": batch_id})
    assert await state(ctx, batch_id) == BatchState.PENDING

    ctx = world(answer(400, {"status": 400, "error": "Bad Request", "message": "malformed"}))
    with pytest.raises(PermanentFailure) as failure:
        await create_batch(ctx, {"batch_id": batch_id})
    assert failure.value.error_class == "BadRequest"


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_key_closes_the_auth_gate_and_keeps_the_batch_pending(
    world: Callable[[Responder], StageContext], status: int
) -> None:
    ctx = world(answer(status, {"status": status, "error": "Unauthorized", "message": "user not found"}))
    dispatcher = Dispatcher(ctx, cast(Any, SimpleNamespace(cleanup_rate_limits=None, run_health_check=None)))
    first, second = await new_batch(ctx, "r1"), await new_batch(ctx, "r2")
    with pytest.raises(Defer, match="refused"):
        await dispatcher.run(jobs.CREATE_BATCH, {"batch_id": first})
    assert await ctx.auth_gate.is_closed()
    with pytest.raises(Defer, match="refused"):
        await dispatcher.run(jobs.CREATE_BATCH, {"batch_id": second})
    assert len(ctx.calls) == 1  # type: ignore[attr-defined]
    assert [await state(ctx, b) for b in (first, second)] == [BatchState.PENDING, BatchState.PENDING]
    assert await ctx.repo.list_dead_letters() == []
    assert ctx.enqueuer.jobs == []  # type: ignore[attr-defined]


async def test_full_slots_defer_without_spending_a_rate_limit_token(world: Callable[[Responder], StageContext]) -> None:
    created = iter(range(10))
    ctx = world(lambda request: httpx.Response(200, json=BATCH_OK | {"batchId": f"{next(created):024x}"}))
    ids = [await new_batch(ctx, f"r{n}") for n in range(3)]
    for batch_id in ids[:2]:
        await create_batch(ctx, {"batch_id": batch_id})
    used_before = (await ctx.limiter.usage())["create"][0]  # type: ignore[attr-defined]
    with pytest.raises(Defer, match="slots") as deferred:
        await create_batch(ctx, {"batch_id": ids[2]})
    assert (await ctx.limiter.usage())["create"][0] == used_before  # type: ignore[attr-defined]
    assert await state(ctx, ids[2]) == BatchState.PENDING
    assert deferred.value.slot_ticket == 0  # parked until a completing batch wakes it


async def test_a_slot_taken_by_another_claim_after_the_count_gives_the_token_back(
    world: Callable[[Responder], StageContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Woken create jobs pass the slot count together and take their tokens; only one wins the claim. A loser makes
    # no call, so its create must not stay counted in the budget for a whole window.
    created = iter(range(10))
    ctx = world(lambda request: httpx.Response(200, json=BATCH_OK | {"batchId": f"{next(created):024x}"}))
    ids = [await new_batch(ctx, f"r{n}") for n in range(3)]
    await create_batch(ctx, {"batch_id": ids[0]})
    claim = ctx.repo.try_claim_submission

    async def another_process_claims_first(batch_id: int, max_in_flight: int, digest: str | None = None) -> Any:
        await claim(ids[1], max_in_flight)  # the last free slot goes to another job between count and claim
        return await claim(batch_id, max_in_flight, digest)

    monkeypatch.setattr(ctx.repo, "try_claim_submission", another_process_claims_first)
    with pytest.raises(Defer, match="slots"):
        await create_batch(ctx, {"batch_id": ids[2]})
    assert len(ctx.calls) == 1  # type: ignore[attr-defined]
    assert await state(ctx, ids[2]) == BatchState.PENDING
    # One create was sent, so one stays counted (the other claimant's own call would take its token).
    assert await ctx.limiter.usage() == {"batch": (1, 100), "create": (1, 100)}  # type: ignore[attr-defined]


async def test_a_database_that_fails_as_bouncer_answers_a_create_does_not_lose_the_batch(
    world: Callable[[Responder], StageContext], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The rate-limit bookkeeping right after the create's answer fails in the database. Bouncer has the batch and
    # charges it, so its id must still reach the ledger, or the results are never fetched: a dead letter instead.
    ctx = world(answer(200, BATCH_OK))
    batch_id = await new_batch(ctx)
    answered = ctx.limiter.answered

    async def answered_without_its_table(decision: Decision) -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}")  # the world's ledger
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.tables["Bouncer_Rate_Limit"].drop)
        finally:
            await engine.dispose()
        await answered(decision)  # the real limiter, on a database that now fails its write

    monkeypatch.setattr(ctx.limiter, "answered", answered_without_its_table)
    await create_batch(ctx, {"batch_id": batch_id})

    batch = await ctx.repo.get_batch(batch_id)
    assert batch is not None and batch.status == BatchState.QUEUED and batch.bouncer_batch_id == "a" * 24
    assert [j.name for j in ctx.enqueuer.jobs] == ["check-batch-status"]  # type: ignore[attr-defined]
    assert len(ctx.calls) == 1  # type: ignore[attr-defined]


async def test_waiting_for_a_rate_limit_token_reads_no_addresses(
    world: Callable[[Responder], StageContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = world(answer(200, BATCH_OK))
    ctx.limiter = NoTokens()
    batch_id = await new_batch(ctx)
    reads: list[int] = []

    async def batch_emails(batch_id: int) -> list[object]:
        reads.append(batch_id)
        return []

    monkeypatch.setattr(ctx.repo, "batch_emails", batch_emails)
    with pytest.raises(Defer, match="rate limit"):
        await create_batch(ctx, {"batch_id": batch_id})
    assert reads == []
    assert await state(ctx, batch_id) == BatchState.PENDING


async def test_a_created_batch_that_cannot_be_recorded_is_kept_from_resubmission(
    world: Callable[[Responder], StageContext], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = world(answer(200, BATCH_OK))
    batch_id = await new_batch(ctx)

    async def database_gone(*args: object) -> None:
        raise StorageError("cannot record a submitted batch: connection lost")

    monkeypatch.setattr(ctx.repo, "record_batch_submitted", database_gone)
    with caplog.at_level("CRITICAL", logger="bouncer_queue"), pytest.raises(PermanentFailure) as failure:
        await create_batch(ctx, {"batch_id": batch_id})
    assert failure.value.error_class == "SubmissionNotRecorded"
    assert "a" * 24 in failure.value.message
    assert any("a" * 24 in record.getMessage() for record in caplog.records)
    assert await state(ctx, batch_id) == BatchState.SUBMITTING  # its retry dead-letters, never resubmits


async def test_a_batch_of_a_cancelled_request_is_never_sent(world: Callable[[Responder], StageContext]) -> None:
    ctx = world(answer(200, BATCH_OK))
    batch_id = await new_batch(ctx)
    await ctx.repo.set_request_state("r1", RequestState.CANCELLED)  # cancelled after its job was queued

    await create_batch(ctx, {"batch_id": batch_id})

    assert len(ctx.calls) == 0  # type: ignore[attr-defined]
    assert await state(ctx, batch_id) == BatchState.CANCELLED


async def test_cancel_request_cancels_unsent_batches_and_finishes_those_at_bouncer(
    world: Callable[[Responder], StageContext],
) -> None:
    ctx = world(lambda request: httpx.Response(202 if request.url.path.endswith("/finish") else 200, json=BATCH_OK))
    chunks = [[EmailRow("a@example.com")], [EmailRow("b@example.com")]]
    at_bouncer, waiting = await ctx.repo.ingest_request(RequestInfo("r1", "u1", Priority.NORMAL), chunks)
    await create_batch(ctx, {"batch_id": at_bouncer})

    outcome = await cancel_request(ctx, "r1")

    assert (outcome.found, outcome.batches_cancelled, outcome.batches_finished) == (True, 1, 1)
    assert await state(ctx, waiting) == BatchState.CANCELLED
    assert [c.url.path.rsplit("/", 1)[-1] for c in ctx.calls] == ["batch", "finish"]  # type: ignore[attr-defined]
    assert not (await cancel_request(ctx, "nope")).found
