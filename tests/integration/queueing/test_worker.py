"""Worker outcomes (retry, permanent failure, exhausted attempts) and graceful shutdown, against Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import pytest

from bouncer_queue.pipeline.outcomes import PermanentFailure
from bouncer_queue.pipeline.ports import JobSpec
from bouncer_queue.queueing.admin import QueueAdmin
from bouncer_queue.queueing.enqueue import BullmqEnqueuer
from bouncer_queue.queueing.worker import JobContext

pytestmark = pytest.mark.redis

Q = "batch-status-check"
SPEC = JobSpec(Q, "check-batch-status", {"batch_id": "b-7"})


async def test_a_failing_job_is_retried_with_backoff_until_it_succeeds(
    start_workers: Any, eventually: Any, enqueuer: BullmqEnqueuer, admin: QueueAdmin, final_failures: Any
) -> None:
    attempts: list[int] = []

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> str:
        attempts.append(ctx.attempts_made)
        if len(attempts) < 3:
            raise RuntimeError("Bouncer 503")
        return "ok"

    await start_workers(process, Q)
    await enqueuer.enqueue(SPEC)  # attempts=3, backoff 100 ms (fixture)
    await eventually(lambda: len(attempts) == 3)
    await eventually(lambda: _count(admin, "completed", 1))
    assert attempts == [0, 1, 2]
    assert final_failures.calls == []


async def _count(admin: QueueAdmin, state: str, expected: int) -> bool:
    return (await admin.queue_counts(Q))[state] == expected


async def test_a_permanent_failure_is_reported_once_and_never_retried(
    start_workers: Any, eventually: Any, enqueuer: BullmqEnqueuer, admin: QueueAdmin, final_failures: Any
) -> None:
    calls: list[JobContext] = []

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> None:
        calls.append(ctx)
        raise PermanentFailure("InsufficientCredits", "402 from Bouncer")

    await start_workers(process, Q)
    await enqueuer.enqueue(SPEC)
    await eventually(lambda: _count(admin, "failed", 1))
    await asyncio.sleep(0.5)  # room for a retry that must not come
    assert len(calls) == 1
    [(queue, name, data, err, attempts)] = final_failures.calls
    assert (queue, name, data, attempts) == (Q, "check-batch-status", {"batch_id": "b-7"}, 1)
    assert isinstance(err, PermanentFailure) and err.error_class == "InsufficientCredits"


async def test_exhausted_attempts_are_reported_once(
    start_workers: Any, eventually: Any, enqueuer: BullmqEnqueuer, admin: QueueAdmin, final_failures: Any
) -> None:
    calls: list[int] = []

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> None:
        calls.append(ctx.attempts_made)
        raise ConnectionError("network down")

    await start_workers(process, Q)
    await enqueuer.enqueue(JobSpec(Q, "check-batch-status", {}, extra={"attempts": 2}))
    await eventually(lambda: _count(admin, "failed", 1))
    assert calls == [0, 1]
    assert [(c[0], c[4]) for c in final_failures.calls] == [(Q, 2)]
    assert isinstance(final_failures.calls[0][3], ConnectionError)


async def test_a_failing_dead_letter_handler_does_not_hide_the_failure(
    start_workers: Any, eventually: Any, enqueuer: BullmqEnqueuer, admin: QueueAdmin
) -> None:
    async def broken_handler(*args: Any) -> None:
        raise RuntimeError("database down")

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> None:
        raise PermanentFailure("BadRequest", "400")

    await start_workers(process, Q, on_final_failure=broken_handler)
    await enqueuer.enqueue(SPEC)
    await eventually(lambda: _count(admin, "failed", 1))


async def test_close_waits_for_a_running_job(
    start_workers: Any, eventually: Any, enqueuer: BullmqEnqueuer, admin: QueueAdmin
) -> None:
    started, finished = asyncio.Event(), asyncio.Event()

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(1.0)
        finished.set()

    pool = await start_workers(process, Q)
    await enqueuer.enqueue(SPEC)
    await asyncio.wait_for(started.wait(), 10)
    assert [job.name for job in pool.running_jobs()] == ["check-batch-status"]
    await pool.close(grace_seconds=10)
    assert finished.is_set()
    assert (await admin.queue_counts(Q))["completed"] == 1
    await pool.close(grace_seconds=10)  # idempotent


async def test_close_forces_after_the_grace_period(
    start_workers: Any, enqueuer: BullmqEnqueuer, caplog: pytest.LogCaptureFixture
) -> None:
    started = asyncio.Event()

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(60)

    pool = await start_workers(process, Q)
    job_id = await enqueuer.enqueue(SPEC)
    await asyncio.wait_for(started.wait(), 10)
    began = time.monotonic()
    await pool.close(grace_seconds=0.3)
    assert time.monotonic() - began < 10  # did not wait out the 60 s job
    assert f"{Q}/{job_id} (check-batch-status)" in caplog.text


async def test_enqueue_again_replaces_a_job_that_failed(
    start_workers: Any, eventually: Any, enqueuer: BullmqEnqueuer, admin: QueueAdmin
) -> None:
    fixed = JobSpec(Q, "check-batch-status", {"batch_id": "b-8"}, job_id="check-b-8")
    calls: list[str] = []

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> None:
        calls.append(ctx.job_id)
        if len(calls) == 1:
            raise PermanentFailure("StorageError", "the dead letter could not be written")

    await start_workers(process, Q)
    await enqueuer.enqueue(fixed)
    await eventually(lambda: _count(admin, "failed", 1))
    # The deterministic id blocks a plain add: nothing runs again.
    await enqueuer.enqueue_many([fixed])
    assert await enqueuer.enqueue_again([fixed]) == 1
    await eventually(lambda: _count(admin, "completed", 1))
    assert calls == [fixed.job_id, fixed.job_id]
    assert (await admin.queue_counts(Q))["failed"] == 0


async def test_started_workers_block_for_fractions_of_a_second(
    start_workers: Any, eventually: Any, enqueuer: BullmqEnqueuer
) -> None:
    # bullmq rounds a worker's blocking wait up to whole seconds unless its blocking connection has read the
    # server's version; without it every deferral (a rate-limit token due in 50 ms, a poll aimed at a batch's end)
    # ran up to 1 s late.
    ran: list[str] = []

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> None:
        ran.append(name)

    pool = await start_workers(process, Q)
    worker = pool.bullmq_workers[Q]
    assert worker.backend.capabilities["canDoubleTimeout"] is True
    await enqueuer.enqueue(SPEC)
    await eventually(lambda: ran == [SPEC.name])
