"""Periodic loops (heartbeat, metrics refresh, reconcile): they run while their block runs and always
end with it, even when a step swallows the cancellation meant to stop it."""

from __future__ import annotations

import asyncio

from bouncer_queue.ops.periodic import every


async def test_steps_run_while_the_block_runs_and_none_after() -> None:
    ran: list[int] = []
    two = asyncio.Event()

    async def step() -> None:
        ran.append(len(ran))
        if len(ran) == 2:
            two.set()

    async with every(0.001, step, "test"):
        await two.wait()
    seen = len(ran)
    for _ in range(20):
        await asyncio.sleep(0)
    assert seen >= 2 and len(ran) == seen


async def test_a_step_that_swallows_its_cancellation_still_ends_the_loop() -> None:
    # Under load a metrics refresh lost its cancellation inside a library; its loop lived on and the workers
    # process never exited after SIGTERM. The loop must end with its block all the same.
    entered = asyncio.Event()
    steps = 0

    async def step() -> None:
        nonlocal steps
        steps += 1
        entered.set()
        try:
            await asyncio.sleep(3_600)
        except asyncio.CancelledError:
            pass  # what that library did

    async def block() -> None:
        async with every(0.001, step, "test"):
            await entered.wait()

    # A hang is the failure; the bound only turns it into one instead of hanging the suite.
    await asyncio.wait_for(block(), 60)
    assert steps == 1


async def test_first_after_waits_one_interval_before_the_first_step() -> None:
    ran: list[int] = []

    async def step() -> None:
        ran.append(1)

    async with every(3_600, step, "test", first_after=True):
        for _ in range(20):
            await asyncio.sleep(0)
    assert ran == []
