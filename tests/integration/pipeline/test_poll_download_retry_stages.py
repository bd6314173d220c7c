"""check-batch-status, download-batch-results, retry-failed-batch and the dead-letter path, stage by stage.

The ledger and the limiter are real (SQLite); Bouncer answers through the real client from a routing responder,
so each status and error can be produced on purpose.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from pydantic import SecretStr
from stage_support import BATCH_OK, RecordingEnqueuer, Responder, new_batch, state

from bouncer_queue.bouncer import BouncerClient
from bouncer_queue.domain import BatchState, RequestState
from bouncer_queue.pipeline import deadletter, jobs
from bouncer_queue.pipeline.context import MemoryGate, StageContext
from bouncer_queue.pipeline.dispatch import Dispatcher
from bouncer_queue.pipeline.download import download_batch_results
from bouncer_queue.pipeline.outcomes import Defer, PermanentFailure
from bouncer_queue.pipeline.poll import check_batch_status
from bouncer_queue.pipeline.retry import retry_failed_batch
from bouncer_queue.pipeline.submit import create_batch
from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.ratelimit import Budget, RateLimiter
from bouncer_queue.storage.repository import Repository

BOUNCER_ID = "a" * 24


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


RESULT = {"status": "deliverable", "reason": "accepted_email", "score": 97, "domain": {"name": "example.com"}}


class Bouncer:
    """Answers create with BATCH_OK, and status/download with whatever the test sets."""

    def __init__(self) -> None:
        self.status: tuple[int, Any] = (200, BATCH_OK | {"status": "processing", "processed": 1})
        self.download: tuple[int, Any] = (200, [])

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST":
            return httpx.Response(200, json=BATCH_OK)
        code, body = self.download if path.endswith("/download") else self.status
        return httpx.Response(code, json=body)


@pytest.fixture
async def submitted(world: Callable[[Responder], StageContext]) -> tuple[StageContext, Bouncer, int]:
    bouncer = Bouncer()
    ctx = world(bouncer)
    batch_id = await new_batch(ctx)
    await create_batch(ctx, {"batch_id": batch_id})
    recorder(ctx).jobs.clear()
    return ctx, bouncer, batch_id


def recorder(ctx: StageContext) -> RecordingEnqueuer:
    assert isinstance(ctx.enqueuer, RecordingEnqueuer)
    return ctx.enqueuer


def enqueued(ctx: StageContext) -> list[str]:
    return [job.name for job in recorder(ctx).jobs]


async def test_a_running_batch_defers_its_poll_and_records_progress(submitted: Any) -> None:
    ctx, _, batch_id = submitted
    with pytest.raises(Defer) as deferred:
        await check_batch_status(ctx, {"batch_id": batch_id})
    assert ctx.policy.poll_min_ms <= deferred.value.delay_ms <= ctx.policy.poll_interval_ms
    batch = await ctx.repo.get_batch(batch_id)
    assert batch is not None and (batch.status, batch.processed) == (BatchState.PROCESSING, 1)
    assert enqueued(ctx) == []


async def test_a_completed_batch_frees_its_slot_wakes_one_waiting_batch_and_is_downloaded(submitted: Any) -> None:
    ctx, bouncer, batch_id = submitted
    bouncer.status = (200, BATCH_OK | {"status": "completed", "credits": 2})
    await check_batch_status(ctx, {"batch_id": batch_id})
    assert await state(ctx, batch_id) == BatchState.COMPLETED
    assert await ctx.repo.in_flight_count() == 0
    assert enqueued(ctx) == [jobs.DOWNLOAD_BATCH_RESULTS]
    assert recorder(ctx).woken == [jobs.EMAIL_VERIFICATION]

    bouncer.download = (200, [RESULT | {"email": "a@example.com"}])
    assert (await ctx.repo.get_request("r1")).status == RequestState.ACTIVE  # type: ignore[union-attr]
    await download_batch_results(ctx, {"batch_id": batch_id})
    assert (await ctx.repo.get_request("r1")).status == RequestState.FINISHED  # type: ignore[union-attr]
    progress = await ctx.repo.request_progress("r1")
    assert await state(ctx, batch_id) == BatchState.DOWNLOADED
    assert dict(progress.emails_by_state) == {"completed": 1, "failed": 1}  # b@ had no result
    await download_batch_results(ctx, {"batch_id": batch_id})  # a redelivered job changes nothing
    assert dict((await ctx.repo.request_progress("r1")).emails_by_state) == {"completed": 1, "failed": 1}


@pytest.mark.parametrize(
    "answer",
    [
        (404, {"status": "404", "error": "Not Found", "message": f"request {BOUNCER_ID} does not exist"}),
        (200, BATCH_OK | {"status": "failed"}),  # undocumented: treated as a failure, not as "still running"
    ],
    ids=["unknown-at-bouncer", "undocumented-status"],
)
async def test_a_batch_bouncer_lost_or_failed_goes_to_retry(submitted: Any, answer: tuple[int, Any]) -> None:
    ctx, bouncer, batch_id = submitted
    bouncer.status = answer
    await check_batch_status(ctx, {"batch_id": batch_id})
    assert await state(ctx, batch_id) == BatchState.FAILED
    assert enqueued(ctx) == [jobs.RETRY_FAILED_BATCH]


async def test_rate_limits_and_unready_results_defer_without_changing_the_batch(submitted: Any) -> None:
    ctx, bouncer, batch_id = submitted
    bouncer.status = (429, {"status": 429, "error": "Too Many Requests", "message": "too many requests"})
    with pytest.raises(Defer, match="429"):
        await check_batch_status(ctx, {"batch_id": batch_id})
    assert await state(ctx, batch_id) == BatchState.QUEUED

    await ctx.repo.record_batch_completed(batch_id, 2)
    bouncer.download = (400, {"status": 400, "error": "Bad Request", "message": "batch is not completed yet"})
    with pytest.raises(Defer, match="not ready"):
        await download_batch_results(ctx, {"batch_id": batch_id})
    assert await state(ctx, batch_id) == BatchState.COMPLETED


async def test_a_failed_batch_is_resubmitted_until_the_retry_limit_then_dead_lettered(submitted: Any) -> None:
    ctx, _, batch_id = submitted
    await ctx.repo.mark_batch_failed(batch_id, "Bouncer status 'failed'")
    await retry_failed_batch(ctx, {"batch_id": batch_id})
    batch = await ctx.repo.get_batch(batch_id)
    assert batch is not None and (batch.status, batch.retries, batch.bouncer_batch_id) == (BatchState.PENDING, 1, None)
    [job] = recorder(ctx).jobs
    assert (job.name, job.job_id) == (jobs.CREATE_BATCH, f"create-{batch_id}-r1")  # a new job, not a no-op

    for _ in range(ctx.policy.max_batch_retries - 1):
        await ctx.repo.mark_batch_failed(batch_id, "again")
        await retry_failed_batch(ctx, {"batch_id": batch_id})
    await ctx.repo.mark_batch_failed(batch_id, "and again")
    with pytest.raises(PermanentFailure) as failure:
        await retry_failed_batch(ctx, {"batch_id": batch_id})
    assert failure.value.error_class == "BatchRetriesExhausted"


async def test_a_dead_letter_is_recorded_queued_and_replayable_once(submitted: Any) -> None:
    ctx, _, batch_id = submitted
    error = PermanentFailure("InsufficientCredits", "1 credits left")
    letter_id = await deadletter.dead_letter(
        ctx, jobs.EMAIL_VERIFICATION, jobs.CREATE_BATCH, {"batch_id": batch_id, "request_id": "r1"}, error, 1
    )
    assert await state(ctx, batch_id) == BatchState.DEAD
    assert (await ctx.repo.get_request("r1")).status == RequestState.FINISHED  # type: ignore[union-attr]
    assert dict((await ctx.repo.request_progress("r1")).emails_by_state) == {"dead": 2}
    [letter] = await ctx.repo.list_dead_letters()
    assert (letter.id, letter.error_class, letter.batch_id) == (letter_id, "InsufficientCredits", batch_id)
    assert [(j.queue, j.job_id) for j in recorder(ctx).jobs] == [(jobs.DEAD_LETTER, f"dead-{letter_id}")]

    assert await deadletter.replay(ctx, letter_id) is True
    assert await state(ctx, batch_id) == BatchState.PENDING
    assert (await ctx.repo.get_request("r1")).status == RequestState.ACTIVE  # type: ignore[union-attr]
    assert recorder(ctx).jobs[-1].name == jobs.CREATE_BATCH
    assert await deadletter.replay(ctx, letter_id) is False


async def test_a_database_that_does_not_answer_defers_the_job_with_a_capped_backoff(tmp_path: Path) -> None:
    # A port nothing listens on: every query is refused, as while PostgreSQL restarts.
    engine = make_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/absent")
    client = BouncerClient(httpx.AsyncClient(base_url="https://bouncer.test/v1.1"), lambda: SecretStr("k-123456"))
    limiter = RateLimiter(engine, {"batch": Budget(100, 60), "create": Budget(100, 60)})
    ctx = StageContext(Repository(engine), client, limiter, RecordingEnqueuer(), MemoryGate())
    dispatcher = Dispatcher(ctx, cast(Any, SimpleNamespace(cleanup_rate_limits=None, run_health_check=None)))
    waits = []
    try:
        for _ in range(7):
            with pytest.raises(Defer) as deferred:
                await dispatcher.run(jobs.CREATE_BATCH, {"batch_id": 1, "request_id": "r1"})
            waits.append(deferred.value.delay_ms)
    finally:
        await client.aclose()
        await engine.dispose()
    assert waits == [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
    assert recorder(ctx).jobs == []  # nothing dead-lettered
