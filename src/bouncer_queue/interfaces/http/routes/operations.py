"""/api/v1/queues and /api/v1/dead-letters: the operations of the seed's queueManager, over QueueManager.

Reading counts needs the `read` scope; changing anything (pause, resume, retry, clean, replay) needs `admin`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from bouncer_queue.interfaces.http.deps import AdminToken, ManagerDep, ReadToken
from bouncer_queue.interfaces.http.schemas import DeadLetterOut, OperationOut, QueueOut, ReplayOut, to_dead_letter
from bouncer_queue.service import QueueManager

router = APIRouter(tags=["operations"])


@router.get("/queues")
async def queue_stats(manager: ManagerDep, _: ReadToken) -> list[QueueOut]:
    """Every queue: paused or not, and its job counts by state (waiting, active, delayed, failed, completed,
    paused: the waiting jobs a paused queue holds)."""
    return await queue_overview(manager)


async def queue_overview(manager: QueueManager) -> list[QueueOut]:
    counts = await manager.get_queue_stats()
    paused = set(await manager.paused_queues())
    return [QueueOut(name=name, paused=name in paused, counts=c) for name, c in counts.items()]


@router.post("/queues/{queue}/pause")
async def pause(queue: str, manager: ManagerDep, _: AdminToken) -> OperationOut:
    await manager.pause_queue(queue)
    return OperationOut(queue=queue, action="paused")


@router.post("/queues/{queue}/resume")
async def resume(queue: str, manager: ManagerDep, _: AdminToken) -> OperationOut:
    await manager.resume_queue(queue)
    return OperationOut(queue=queue, action="resumed")


@router.post("/queues/{queue}/retry-failed")
async def retry_failed(queue: str, manager: ManagerDep, _: AdminToken) -> OperationOut:
    """Move the queue's failed jobs back to waiting."""
    return OperationOut(queue=queue, action="retried", count=await manager.retry_failed_jobs(queue))


@router.post("/queues/{queue}/clean-failed")
async def clean_failed(
    queue: str, manager: ManagerDep, _: AdminToken, hours: Annotated[float, Query(ge=0)] = 24
) -> OperationOut:
    """Remove the queue's failed jobs older than `hours`."""
    return OperationOut(queue=queue, action="cleaned", count=await manager.clean_failed_jobs(queue, hours))


@router.get("/dead-letters")
async def dead_letters(
    manager: ManagerDep,
    _: ReadToken,
    include_replayed: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetterOut]:
    letters = await manager.dead_letters(include_replayed=include_replayed, limit=limit)
    return [to_dead_letter(letter) for letter in letters]


@router.post("/dead-letters/{letter_id}/replay")
async def replay(letter_id: int, manager: ManagerDep, _: AdminToken, force: bool = False) -> ReplayOut:
    """Enqueue the dead letter's job again; 404 when there is no such dead letter, 409 for one that may have
    been charged (check the Bouncer account, then replay with `force=true`)."""
    if await manager.get_dead_letter(letter_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dead letter {letter_id}")
    return ReplayOut(id=letter_id, replayed=await manager.replay_dead_letter(letter_id, force=force))


@router.post("/dead-letters/replay-all")
async def replay_all(manager: ManagerDep, _: AdminToken, force: bool = False) -> OperationOut:
    """Replay every dead letter; those that may have been charged only with `force=true`."""
    count = await manager.replay_all_dead_letters(force=force)
    return OperationOut(queue="dead-letter", action="replayed", count=count)
