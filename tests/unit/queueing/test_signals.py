"""on_stop: first signal graceful, second forced, old handlers restored."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from bouncer_queue.pipeline.outcomes import PermanentFailure
from bouncer_queue.queueing.signals import on_stop
from bouncer_queue.queueing.worker import JobContext, dispatch


async def test_first_signal_is_graceful_and_the_second_forces() -> None:
    calls: list[str] = []
    before = signal.getsignal(signal.SIGTERM)
    stopped = asyncio.Event()

    def graceful() -> None:
        calls.append("graceful")
        stopped.set()

    with on_stop(graceful, force=lambda: calls.append("force")):
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stopped.wait(), 5)
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):
            if len(calls) == 2:
                break
            await asyncio.sleep(0.01)
    assert calls == ["graceful", "force"]
    assert signal.getsignal(signal.SIGTERM) == before


def test_without_install_the_handler_is_handed_out() -> None:
    calls: list[str] = []
    with on_stop(lambda: calls.append("graceful"), install=False) as handle:
        handle(signal.SIGTERM)
        with pytest.raises(SystemExit):
            handle(signal.SIGTERM)
    assert calls == ["graceful"]


async def test_dispatch_routes_by_job_name() -> None:
    async def poll(data: object, ctx: JobContext) -> str:
        return "polled"

    process = dispatch({"check-batch-status": poll})
    ctx = JobContext(job_id="1", queue="batch-status-check", attempts_made=0, max_attempts=3)
    assert await process("check-batch-status", {}, ctx) == "polled"
    with pytest.raises(PermanentFailure):
        await process("nope", {}, ctx)
