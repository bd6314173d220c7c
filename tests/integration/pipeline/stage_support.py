"""Stage fixtures: a real SQLite ledger and limiter, and the real Bouncer client over an httpx.MockTransport.

Bouncer's answers come from a responder function, so each error class and status can be produced exactly; the
same behaviours run against the simulator over real HTTP in tests/acceptance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import httpx

from bouncer_queue.domain import BatchState, Priority
from bouncer_queue.pipeline.context import StageContext
from bouncer_queue.pipeline.ports import JobSpec
from bouncer_queue.storage.records import EmailRow, RequestInfo

Responder = Callable[[httpx.Request], httpx.Response]

BATCH_OK = {"batchId": "a" * 24, "created": "2024-05-02T09:14:03.512Z", "status": "queued", "quantity": 2}


class RecordingEnqueuer:
    def __init__(self) -> None:
        self.jobs: list[JobSpec] = []
        self.woken: list[str] = []
        self.promoted: list[tuple[str, str | None, int | None]] = []

    async def enqueue(self, spec: JobSpec) -> str:
        self.jobs.append(spec)
        return spec.job_id or str(len(self.jobs))

    async def enqueue_many(self, specs: Sequence[JobSpec]) -> list[str]:
        return [await self.enqueue(s) for s in specs]

    async def enqueue_again(self, specs: Sequence[JobSpec]) -> int:
        await self.enqueue_many(specs)
        return 0

    async def slot_wakeups(self, queue: str) -> int:
        return len(self.woken)

    async def wake_slot_waiter(self, queue: str) -> bool:
        self.woken.append(queue)
        return False

    async def promote_job(self, queue: str, job_id: str) -> bool:
        self.promoted.append((queue, job_id, None))
        return False


async def new_batch(ctx: StageContext, request_id: str = "r1") -> int:
    rows = [EmailRow("a@example.com"), EmailRow("b@example.com")]
    [batch_id] = await ctx.repo.ingest_request(RequestInfo(request_id, "u1", Priority.NORMAL), [rows])
    return batch_id


async def state(ctx: StageContext, batch_id: int) -> BatchState:
    batch = await ctx.repo.get_batch(batch_id)
    assert batch is not None
    return batch.status


def answer(status: int, body: object) -> Responder:
    return lambda request: httpx.Response(status, json=body)
