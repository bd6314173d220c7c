"""QueueAdmin: the operator's view of the queues (counts, pause/resume, retry/clean failed, purge) and the job
schedulers.

What the seed's queue manager offered (getQueueStats, pauseQueue, retryFailedJobs, cleanFailedJobs), on bullmq's
Queue API, with plain snake_case results. Two views of the counts:

- `counts()`, ours: waiting, active, completed, failed, delayed, paused, each job in exactly one state. bullmq keeps
  prioritized jobs out of "waiting"; here "waiting" counts both, since every job of ours has a priority. On a
  paused queue the jobs ready to run are "paused", not "waiting".
- `bullmq_counts()`, BullMQ's own (getJobCounts of every type, as bull-board and Node's Queue show them) plus
  `isPaused`: what `stats --json` prints.
"""

from __future__ import annotations

import time
from typing import Any

from bullmq import Queue

from bouncer_queue.domain import Priority
from bouncer_queue.queueing.connection import Connection
from bouncer_queue.queueing.names import (
    ALL_QUEUES,
    CLEANUP_RATE_LIMITS,
    CLEANUP_TASKS,
    HEALTH_CHECK,
    WORK_QUEUES,
)
from bouncer_queue.queueing.queues import QueueSet

#: The states `counts()` reports for every queue.
STATES = ("waiting", "active", "completed", "failed", "delayed", "paused")
_BULLMQ_STATES = ("wait", "paused", "prioritized", "active", "completed", "failed", "delayed")
#: Every job type BullMQ's getJobCounts knows, as Node BullMQ names them.
BULLMQ_TYPES = ("active", "completed", "delayed", "failed", "paused", "prioritized", "waiting", "waiting-children")
#: bullmq's prioritized zset score is priority * 2**32 + an insertion counter (addPrioritizedJob Lua script).
_PRIORITY_SCORE_STEP = 2**32


class QueueAdmin:
    """Operations on all our queues under `prefix`. Queues open on first use; close with `close()`."""

    def __init__(self, connection: Connection, prefix: str) -> None:
        self._queue_set = QueueSet(connection, prefix)

    def _queue(self, name: str) -> Queue:
        return self._queue_set.get(name)

    async def queue_counts(self, queue: str) -> dict[str, int]:
        """Job counts of one queue by state (see STATES), each job once; "paused": ready jobs held by a pause."""
        bull_queue = self._queue(queue)
        raw = await bull_queue.getJobCounts(*_BULLMQ_STATES)
        counts = {state: int(raw.get(state, 0)) for state in ("active", "completed", "failed", "delayed")}
        ready = sum(int(raw.get(state, 0)) for state in ("wait", "paused", "prioritized"))
        paused = await bull_queue.isPaused()
        counts["waiting"], counts["paused"] = (0, ready) if paused else (ready, 0)
        return {state: counts[state] for state in STATES}

    async def bullmq_counts(self) -> dict[str, dict[str, int | bool]]:
        """BullMQ's own counts of every queue (BULLMQ_TYPES), plus `isPaused`, by queue name."""
        found: dict[str, dict[str, int | bool]] = {}
        for name in ALL_QUEUES:
            queue = self._queue(name)
            raw = await queue.getJobCounts(*BULLMQ_TYPES)
            found[name] = {t: int(raw.get(t, 0)) for t in BULLMQ_TYPES} | {"isPaused": bool(await queue.isPaused())}
        return found

    async def counts(self) -> dict[str, dict[str, int]]:
        """Job counts of every queue (the dead-letter queue included), by queue name then state."""
        return {queue: await self.queue_counts(queue) for queue in ALL_QUEUES}

    async def pause(self, queue: str) -> None:
        """Stop workers everywhere from taking new jobs from `queue`; running jobs finish."""
        await self._queue(queue).pause()

    async def resume(self, queue: str) -> None:
        await self._queue(queue).resume()

    async def is_paused(self, queue: str) -> bool:
        return bool(await self._queue(queue).isPaused())

    async def retry_failed(self, queue: str) -> int:
        """Move every failed job of `queue` back to waiting; return how many there were."""
        bull_queue = self._queue(queue)
        failed = int((await bull_queue.getJobCounts("failed")).get("failed", 0))
        if failed:
            await bull_queue.retryJobs({"state": "failed"})
        return failed

    async def clean_failed(self, queue: str, hours: float) -> int:
        """Delete failed jobs of `queue` that failed more than `hours` ago; return how many."""
        grace_ms = max(0, int(hours * 3_600_000))
        removed = await self._queue(queue).clean(grace_ms, 0, "failed")  # limit 0: no limit
        return len(removed or [])

    async def purge(self, queue: str) -> int:
        """Remove every job of `queue` that is not running (waiting, delayed, completed, failed); return how many.
        Running jobs finish; the queue's job schedulers stay."""
        bull_queue = self._queue(queue)
        states = ("wait", "prioritized", "delayed", "paused")
        waiting = sum(int(n) for n in (await bull_queue.getJobCounts(*states)).values())
        await bull_queue.drain(True)  # True: the delayed jobs too
        removed = [len(await bull_queue.clean(0, 0, state) or []) for state in ("completed", "failed")]
        return waiting + sum(removed)

    async def oldest_waiting_age_seconds(self) -> float | None:
        """How long the oldest job ready to run on a work queue has waited; None when none waits."""
        now_ms = time.time() * 1000
        ready_since = [ms for queue in WORK_QUEUES for ms in await self._ready_since_ms(self._queue(queue))]
        return max(0.0, (now_ms - min(ready_since)) / 1000) if ready_since else None

    async def _ready_since_ms(self, queue: Queue) -> list[float]:
        # Only the head of each list/priority band can be the oldest, so this reads a handful of keys, not all jobs.
        client = queue.client
        candidates: list[str] = []
        tail = await client.lindex(queue.keys["wait"], -1)  # LPUSHed: the oldest is last
        if tail:
            candidates.append(tail)
        for priority in Priority:
            low = int(priority) * _PRIORITY_SCORE_STEP
            candidates += await client.zrangebyscore(
                queue.keys["prioritized"], low, low + _PRIORITY_SCORE_STEP - 1, start=0, num=1
            )
        return [ms for job_id in candidates if (ms := await self._job_ready_since_ms(queue, job_id)) is not None]

    @staticmethod
    async def _job_ready_since_ms(queue: Queue, job_id: str) -> float | None:
        timestamp, delay = await queue.client.hmget(queue.toKey(job_id), ["timestamp", "delay"])
        if timestamp is None:
            return None  # removed between the two reads
        return float(timestamp) + float(delay or 0)

    async def upsert_schedulers(self, health_every_ms: int, cleanup_every_ms: int) -> None:
        """Create or update the repeating health-check and cleanup-rate-limits jobs on cleanup-tasks (idempotent)."""
        queue = self._queue(CLEANUP_TASKS)
        health_every_ms, cleanup_every_ms = int(health_every_ms), int(cleanup_every_ms)
        # getJobSchedulers, not getJobScheduler: bullmq's getJobScheduler raises for an id that does not exist.
        every_now = {s["key"]: s.get("every") for s in await queue.getJobSchedulers()}
        for job_name, every_ms in ((HEALTH_CHECK, health_every_ms), (CLEANUP_RATE_LIMITS, cleanup_every_ms)):
            if every_now.get(job_name, every_ms) != every_ms:
                # bullmq keeps the old interval's offset when `every` changes; after a late run it then waits up to a
                # whole old interval (a minute for the health check) before firing again. Start the scheduler afresh.
                await queue.removeJobScheduler(job_name)
            opts: dict[str, Any] = {"priority": int(Priority.LOW), "removeOnComplete": 100, "removeOnFail": 100}
            await queue.upsertJobScheduler(job_name, {"every": every_ms}, job_name, {}, opts)

    async def close(self) -> None:
        """Close every queue opened so far. Safe to call twice."""
        await self._queue_set.close()
