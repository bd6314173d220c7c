"""In one process, a create call goes before a download's decoding and storing (pipeline/precedence.py).

A freed slot earns nothing until its next create reaches Bouncer; a download can wait. Bouncer here holds the
create's answer until the test releases it, and logs the order in which calls arrive and are answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from stage_support import BATCH_OK, Responder, new_batch, state

from bouncer_queue.domain import BatchState
from bouncer_queue.pipeline.context import StageContext
from bouncer_queue.pipeline.download import download_batch_results
from bouncer_queue.pipeline.poll import check_batch_status
from bouncer_queue.pipeline.precedence import Precedence
from bouncer_queue.pipeline.submit import create_batch

RESULT = {"status": "deliverable", "reason": "accepted_email", "score": 97, "domain": {"name": "example.com"}}


class HeldBouncer:
    """Creates wait for `release`; status says completed; downloads answer at once. `log` records the order."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.create_arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.hold = False
        self.created = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.log.append("create arrived")
            self.create_arrived.set()
            if self.hold:
                await self.release.wait()
            self.log.append("create answered")
            self.created += 1
            return httpx.Response(200, json=BATCH_OK | {"batchId": f"{self.created:024d}"})
        if request.url.path.endswith("/download"):
            self.log.append("download")
            return httpx.Response(200, json=[RESULT | {"email": "a@example.com"}])
        return httpx.Response(200, json=BATCH_OK | {"batchId": f"{self.created:024d}", "status": "completed"})


async def test_a_download_waits_for_a_create_under_way_in_its_process(
    world: Callable[[Responder], StageContext],
) -> None:
    bouncer = HeldBouncer()
    ctx = world(bouncer)  # type: ignore[arg-type]
    done_id = await new_batch(ctx, "r1")
    await create_batch(ctx, {"batch_id": done_id})
    await check_batch_status(ctx, {"batch_id": done_id})
    assert await state(ctx, done_id) == BatchState.COMPLETED
    bouncer.log.clear()

    bouncer.hold = True
    bouncer.create_arrived.clear()
    pending_id = await new_batch(ctx, "r2")
    creating = asyncio.create_task(create_batch(ctx, {"batch_id": pending_id}))
    await bouncer.create_arrived.wait()
    downloading = asyncio.create_task(download_batch_results(ctx, {"batch_id": done_id}))
    for _ in range(20):  # ample turns for the download to run, were it not held back
        await asyncio.sleep(0.01)
    assert not downloading.done()
    bouncer.release.set()
    await asyncio.gather(creating, downloading)

    assert bouncer.log == ["create arrived", "create answered", "download"]
    assert await state(ctx, done_id) == BatchState.DOWNLOADED


async def test_without_urgent_work_nothing_waits_and_urgent_blocks_nest() -> None:
    precedence = Precedence()
    await asyncio.wait_for(precedence.after_urgent(), timeout=5)
    async with precedence.urgent():
        async with precedence.urgent():
            waiter = asyncio.create_task(precedence.after_urgent())
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not waiter.done()
    await asyncio.wait_for(waiter, timeout=5)
