"""Periodic loops of a long-running process (heartbeat, loop monitor, metrics refresh, reconcile): each runs in a
task of its own while a block runs and always ends with it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable


@contextlib.asynccontextmanager
async def every(
    seconds: float, step: Callable[[], Awaitable[None]], name: str, *, first_after: bool = False
) -> AsyncIterator[None]:
    """Await `step()` every `seconds` in a task of its own while the block runs (from the start, or after one
    interval with `first_after`); on exit, let a step under way be cancelled and stop.

    The loop ends on an event as well as by its cancellation. A cancellation can be lost inside the libraries a
    step awaits (Python 3.11's wait_for may return a result that arrived with it), and a refresher that lived on
    after its cancel kept a workers process from ever exiting after SIGTERM (seen under load): the event still
    ends the loop at the step's end."""
    stop = asyncio.Event()

    async def loop() -> None:
        if first_after:
            await _pause(stop, seconds)
        while not stop.is_set():
            await step()
            await _pause(stop, seconds)

    task = asyncio.create_task(loop(), name=name)
    try:
        yield
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Wait `seconds`, or less when `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
