"""Slot waiters: create-batch jobs parked in the delayed set until a batch slot frees, and their wake-up.

A create-batch job that finds every batch slot taken defers itself (pipeline/submit.py) and is *parked* here: its
id goes into a sorted set, most urgent first (bullmq priority, then the job's age). When a batch completes, the
poll stage wakes exactly one parked job, promoting it from the delayed set so a worker takes it at once. Only
parked jobs are ever promoted: a job the user delayed (`delay`) sits in the delayed set too, but it is never
parked before it has run, so its delay holds exactly.

No lost wake-up: a job reads the wake-up counter *before* it counts the slots in use, and the waker bumps the
counter *after* the slot was freed in the database. A job that parks after a wake-up it missed sees the counter
moved and promotes itself. The job's own delay is only a fallback timer.

The keys live beside the queue's own, under the same prefix (one Redis Cluster slot): `<prefix>:<queue>:slot-*`.
"""

from __future__ import annotations

import logging
from typing import Any

from bullmq import Job

log = logging.getLogger(__name__)

#: Score = priority * _PRIORITY_WEIGHT + the job's creation time in ms: priority first, then age.
_PRIORITY_WEIGHT = 10**13


def _keys(prefix: str, queue: str) -> tuple[str, str]:
    return f"{prefix}:{queue}:slot-waiters", f"{prefix}:{queue}:slot-wakeups"


async def wakeups(client: Any, prefix: str, queue: str) -> int:
    """The wake-up counter: how many slots were freed so far (0 when never)."""
    value = await client.get(_keys(prefix, queue)[1])
    return int(value or 0)


async def park(job: Any, prefix: str, queue: str, ticket: int) -> None:
    """Register `job` (already moved to the delayed set) as waiting for a slot. `ticket` is the wake-up counter
    the job read before it found the slots full: if a slot freed since, the job promotes itself now."""
    waiters_key, _ = _keys(prefix, queue)
    client = job.queue.client
    score = int(job.priority or 0) * _PRIORITY_WEIGHT + int(job.timestamp or 0)
    await client.zadd(waiters_key, {str(job.id): score})
    if await wakeups(client, prefix, queue) != ticket:
        await client.zrem(waiters_key, str(job.id))
        await _promote(job)


async def wake_one(bull_queue: Any, prefix: str, queue: str) -> bool:
    """A slot was freed: count the wake-up, then promote the most urgent parked job that is still delayed."""
    waiters_key, wakeups_key = _keys(prefix, queue)
    client = bull_queue.client
    await client.incr(wakeups_key)
    while popped := await client.zpopmin(waiters_key):
        job = await Job.fromId(bull_queue, popped[0][0])
        # A stale entry (the job ran on its fallback timer, or was removed) is skipped for the next one.
        if job is not None and await _promote(job):
            return True
    return False


async def _promote(job: Any) -> bool:
    try:
        await job.promote()
    except Exception:  # no longer delayed: it is running or done, which is what a wake-up wanted anyway
        return False
    log.debug("slot waiter woken", extra={"action": "slot_waiter_woken", "job_id": str(job.id)})
    return True
