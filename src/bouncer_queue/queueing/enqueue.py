"""BullmqEnqueuer: the pipeline's `Enqueuer` port on bullmq queues; JobSpec in, camelCase job options out.

Every job gets a priority (bullmq runs an unprioritized job before all prioritized ones, pitfall 6), the retry policy
(attempts + exponential backoff) and removeOnComplete/removeOnFail counts. A JobSpec's `job_id` becomes bullmq's
`jobId`, which makes adding idempotent: a second add with the same id is a no-op. Queues open on first use. Waking
a job parked for a batch slot goes through queueing/waiters.py.

On a Redis Cluster, bulk adds go one job at a time: bullmq's addBulk sends its Lua scripts through a pipeline, and
redis-py's cluster pipeline refuses EVALSHA ("Calling pipelined function evalsha is blocked").
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from bullmq import Queue

from bouncer_queue.pipeline.ports import JobSpec
from bouncer_queue.queueing import waiters
from bouncer_queue.queueing.connection import Connection, RedisTarget
from bouncer_queue.queueing.queues import QueueSet

logger = logging.getLogger(__name__)

_ENDED = frozenset({"failed", "completed"})


class BullmqEnqueuer:
    """Puts jobs on bullmq queues under `prefix`. Close with `close()`."""

    def __init__(
        self,
        connection: Connection,
        prefix: str,
        *,
        attempts: int,
        backoff_ms: int,
        keep_completed: int,
        keep_failed: int,
    ) -> None:
        self._queue_set = QueueSet(connection, prefix)
        self._can_pipeline = not (isinstance(connection, RedisTarget) and connection.cluster)
        self._prefix = prefix
        self._attempts = attempts
        self._backoff_ms = backoff_ms
        self._keep_completed = keep_completed
        self._keep_failed = keep_failed

    def job_options(self, spec: JobSpec) -> dict[str, Any]:
        """bullmq options for one spec; `spec.extra` (already camelCase, e.g. {"attempts": 1}) wins."""
        options: dict[str, Any] = {
            "priority": int(spec.priority),
            "attempts": self._attempts,
            "backoff": {"type": "exponential", "delay": self._backoff_ms},
            "removeOnComplete": self._keep_completed,
            "removeOnFail": self._keep_failed,
        }
        if spec.delay_ms > 0:
            options["delay"] = spec.delay_ms
        if spec.job_id is not None:
            options["jobId"] = spec.job_id
        options.update(spec.extra)
        return options

    def _queue(self, name: str) -> Queue:
        return self._queue_set.get(name)

    async def enqueue(self, spec: JobSpec) -> str:
        """Add one job; return its id (the existing job's id when `job_id` was already used)."""
        job = await self._queue(spec.queue).add(spec.name, dict(spec.data), self.job_options(spec))
        logger.debug("job enqueued", extra={"action": "job_enqueued", "queue": spec.queue, "job": spec.name})
        return str(job.id)

    async def enqueue_many(self, specs: Sequence[JobSpec]) -> list[str]:
        """Add several jobs, one addBulk round trip per queue; ids come back in the order of `specs`."""
        by_queue: dict[str, list[int]] = defaultdict(list)
        for index, spec in enumerate(specs):
            by_queue[spec.queue].append(index)
        ids: list[str] = [""] * len(specs)
        for queue_name, indexes in by_queue.items():
            bulk = [
                {"name": specs[i].name, "data": dict(specs[i].data), "opts": self.job_options(specs[i])}
                for i in indexes
            ]
            jobs = await self._add_bulk(self._queue(queue_name), bulk)
            for index, job in zip(indexes, jobs, strict=True):
                ids[index] = str(job.id)
        return ids

    async def _add_bulk(self, queue: Queue, bulk: list[dict[str, Any]]) -> list[Any]:
        if self._can_pipeline:
            return list(await queue.addBulk(bulk))
        return [await queue.add(job["name"], job["data"], job["opts"]) for job in bulk]

    async def enqueue_again(self, specs: Sequence[JobSpec]) -> int:
        """Add the jobs; one whose id is taken by a failed or completed job is removed first, so it runs again
        (with fresh attempts). Deterministic ids would otherwise make such a job block its batch for good."""
        replaced = 0
        for spec in specs:
            queue = self._queue(spec.queue)
            if spec.job_id is not None and await queue.getJobState(spec.job_id) in _ENDED:
                # A job that is running holds a lock, and removeJob leaves a locked job alone.
                await queue.remove(spec.job_id)
                replaced += 1
        await self.enqueue_many(specs)
        return replaced

    async def slot_wakeups(self, queue: str) -> int:
        """The slot wake-up counter of `queue` (see queueing/waiters.py)."""
        return await waiters.wakeups(self._queue(queue).client, self._prefix, queue)

    async def wake_slot_waiter(self, queue: str) -> bool:
        """Promote the most urgent job parked for a batch slot on `queue`; jobs delayed otherwise stay put."""
        return await waiters.wake_one(self._queue(queue), self._prefix, queue)

    async def promote_job(self, queue: str, job_id: str) -> bool:
        """Move the delayed job `job_id` to waiting now; False when there is no such delayed job."""
        job = await self._queue(queue).getJob(job_id)
        if job is None:
            return False
        try:
            await job.promote()
        except Exception:  # not delayed: waiting, running or finished already
            return False
        return True

    async def close(self) -> None:
        """Close every queue opened so far. Safe to call twice."""
        await self._queue_set.close()
