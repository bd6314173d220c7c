"""Workers: one bullmq Worker per work queue, feeding every job to one `Processor`, and their shutdown.

The processor sees plain values (job name, data, a `JobContext`), never a bullmq Job. What it raises is translated
here, and only here, into bullmq's terms (see pipeline/outcomes.py):

- `Defer(ms)`: the job moves to the delayed set with skipAttempt and `DelayedError` is raised, so no attempt is
  spent (pitfall 3 of the bullmq notes; Python bullmq has no RateLimitError). A Defer with a `slot_ticket` also
  parks the job as a slot waiter (queueing/waiters.py), to be woken when a batch slot frees.
- `PermanentFailure`: `on_final_failure` runs, then `UnrecoverableError` stops all retries.
- anything else: re-raised for bullmq's retry with exponential backoff; on the last attempt `on_final_failure` runs
  first. It is called from inside the job rather than from a "failed" listener because bullmq's listeners are
  synchronous and an `async def` one silently never runs (pitfall 4); no listener is registered at all.

Workers are built with autorun off and started by `WorkerPool.start()`. Rate-limited workers get a short drainDelay,
because bullmq sleeps drainDelay, not the limiter's TTL, when the limit is reached (pitfall 2).

For Node's tools (bull-board, `Queue.getWorkers()`, `Queue.getMetrics()`): each worker names its Redis connections
as Node BullMQ does, `<prefix>:<base64(queue)>:w:<worker name>` (bullmq for Python uses `<prefix>:<queue>`, which
Node's CLIENT LIST matcher never finds), and collects BullMQ's per-minute completed/failed metrics.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bullmq import DelayedError, UnrecoverableError, Worker

from bouncer_queue.aio import cancel_and_wait
from bouncer_queue.config import QueueTuning
from bouncer_queue.pipeline.outcomes import Defer, PermanentFailure
from bouncer_queue.queueing import waiters
from bouncer_queue.queueing.connection import Connection, as_bullmq_connection
from bouncer_queue.queueing.names import check_queue_name

logger = logging.getLogger(__name__)

#: Data points of BullMQ's worker metrics (one a minute): two weeks, Node BullMQ's MetricsTime.TWO_WEEKS.
METRICS_DATA_POINTS = 20_160

#: The longest drainDelay a rate-limited worker may have: it is also how late a new limiter window starts.
MAX_LIMITED_DRAIN_DELAY_SECONDS = 2


@dataclass(frozen=True)
class JobContext:
    """What a processor may know about the job it runs. `attempts_made` counts finished earlier attempts."""

    job_id: str
    queue: str
    attempts_made: int
    max_attempts: int

    @property
    def is_last_attempt(self) -> bool:
        return self.attempts_made + 1 >= self.max_attempts


@dataclass(frozen=True)
class RunningJob:
    """A job a worker is processing right now."""

    queue: str
    job_id: str
    name: str

    def __str__(self) -> str:
        return f"{self.queue}/{self.job_id} ({self.name})"


#: (job name, job data, context) -> result. Raise Defer / PermanentFailure / anything else (see the module docstring).
Processor = Callable[[str, Mapping[str, Any], JobContext], Awaitable[Any]]
#: (queue, job name, data, error, attempts made including the failed one) -> None. Dead-letters the job.
FinalFailureHandler = Callable[[str, str, Mapping[str, Any], BaseException, int], Awaitable[None]]
#: (data, context) -> result: one pipeline stage, as `dispatch` calls it.
Handler = Callable[[Mapping[str, Any], JobContext], Awaitable[Any]]


def dispatch(handlers: Mapping[str, Handler]) -> Processor:
    """A Processor that routes each job to the handler of its name; an unknown name fails permanently."""

    async def process(name: str, data: Mapping[str, Any], ctx: JobContext) -> Any:
        handler = handlers.get(name)
        if handler is None:
            raise PermanentFailure("UnknownJob", f"no handler for job {name!r} on queue {ctx.queue!r}")
        return await handler(data, ctx)

    return process


def _now_ms() -> int:
    return int(time.time() * 1000)


def _context(queue: str, job: Any) -> JobContext:
    return JobContext(
        job_id=str(job.id),
        queue=queue,
        attempts_made=int(job.attemptsMade or 0),
        max_attempts=max(1, int(job.opts.get("attempts") or 1)),
    )


async def _report_final_failure(
    handler: FinalFailureHandler, queue: str, name: str, data: Mapping[str, Any], err: BaseException, attempts: int
) -> None:
    # A failing dead-letter write must not hide the job's own error: log it and let bullmq fail the job.
    try:
        await handler(queue, name, data, err, attempts)
    except Exception:
        logger.exception("dead-lettering failed", extra={"action": "dead_letter_failed", "queue": queue, "job": name})


def bullmq_processor(
    queue: str, processor: Processor, on_final_failure: FinalFailureHandler, prefix: str
) -> Callable[..., Any]:
    """Wrap `processor` as a bullmq `async (job, token)` processor that applies the outcome rules above."""

    async def process(job: Any, token: str) -> Any:
        ctx = _context(queue, job)
        data: Mapping[str, Any] = job.data or {}
        try:
            return await processor(job.name, data, ctx)
        except Defer as defer:
            await job.moveToDelayed(_now_ms() + defer.delay_ms, token)
            if defer.slot_ticket is not None:
                await waiters.park(job, prefix, queue, defer.slot_ticket)
            logger.info(
                "job deferred",
                extra={
                    "action": "job_deferred",
                    "queue": queue,
                    "job_id": ctx.job_id,
                    "reason": defer.reason,
                    "delay_ms": defer.delay_ms,
                },
            )
            raise DelayedError() from None
        except PermanentFailure as failure:
            await _report_final_failure(on_final_failure, queue, job.name, data, failure, ctx.attempts_made + 1)
            raise UnrecoverableError(str(failure)) from failure
        except Exception as err:
            if ctx.is_last_attempt:
                await _report_final_failure(on_final_failure, queue, job.name, data, err, ctx.attempts_made + 1)
            raise

    return process


def node_client_name(prefix: str, queue: str, worker_name: str | None) -> str:
    """The Redis client name Node BullMQ gives a worker of `queue`, which its getWorkers() looks for."""
    encoded = base64.b64encode(queue.encode()).decode()
    return f"{prefix}:{encoded}" + (f":w:{worker_name}" if worker_name else "")


def worker_options(
    connection: Connection, prefix: str, tuning: QueueTuning, *, drain_delay_seconds: int, name: str | None = None
) -> dict[str, Any]:
    """bullmq Worker options for one queue: never autorun; metrics on; a limiter and a short drainDelay when limited."""
    options: dict[str, Any] = {
        "connection": as_bullmq_connection(connection),
        "prefix": prefix,
        "autorun": False,
        "concurrency": tuning.concurrency,
        "drainDelay": drain_delay_seconds,
        "metrics": {"maxDataPoints": METRICS_DATA_POINTS},
    }
    if name:
        options["name"] = name
    if tuning.limiter_max > 0:
        options["limiter"] = {"max": tuning.limiter_max, "duration": tuning.limiter_duration_ms}
        options["drainDelay"] = min(drain_delay_seconds, MAX_LIMITED_DRAIN_DELAY_SECONDS)
    return options


async def exact_block_timeouts(worker: Worker) -> None:
    """Let `worker` block for fractions of a second, so delayed jobs run when due rather than up to 1 s late.

    bullmq rounds its blocking wait up to whole seconds unless its blocking connection knows the server can block
    for fractions (Redis >= 6), and only `getRedisVersion` tells it; the worker never calls it (bullmq notes, bug 4).
    Every deferral (a rate-limit token due in 50 ms, a poll aimed at a batch's end) then ran up to 1 s late.
    """
    blocking = getattr(getattr(worker, "backend", None), "blocking_connection", None)
    if blocking is None:
        return
    try:
        await blocking.getRedisVersion()
    except Exception as exc:  # the worker still runs, with whole-second waits; its run loop reports a dead Redis
        logger.warning("could not read the Redis version: %s", exc, extra={"action": "redis_version_unknown"})


class WorkerPool:
    """The workers of one process. `start()` once; `close(grace)` is idempotent."""

    def __init__(self, workers: Mapping[str, Worker]) -> None:
        self._workers = dict(workers)
        self._tasks: list[asyncio.Task[Any]] = []
        self._close_lock = asyncio.Lock()
        self._closed = False

    @property
    def queues(self) -> list[str]:
        return list(self._workers)

    @property
    def bullmq_workers(self) -> Mapping[str, Worker]:
        """The bullmq Worker objects by queue; for diagnostics and tests inside queueing only."""
        return self._workers

    async def start(self) -> None:
        """Start every worker's run loop as a task."""
        if self._tasks or self._closed:
            raise RuntimeError("a WorkerPool can be started only once")
        for worker in self._workers.values():
            await exact_block_timeouts(worker)
        for queue, worker in self._workers.items():
            self._tasks.append(asyncio.create_task(worker.run(), name=f"bullmq-worker:{queue}"))
        logger.info("workers started", extra={"action": "workers_started", "queues": self.queues})

    async def wait_until_one_stops(self) -> str:
        """Return the queue of the first worker whose run loop ends. Before close() that is a failure: bullmq
        prints the error and returns, and that queue would silently stop being served."""
        if not self._tasks:
            raise RuntimeError("the WorkerPool is not started")
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        task = done.pop()
        error = None if task.cancelled() else task.exception()
        return task.get_name().removeprefix("bullmq-worker:") + (f" ({error!r})" if error else "")

    def running_jobs(self) -> list[RunningJob]:
        """The jobs being processed right now, by every worker."""
        return [
            RunningJob(queue=queue, job_id=str(job.id), name=str(job.name))
            for queue, worker in self._workers.items()
            for job, _token in list(worker.jobs)
        ]

    async def close(self, grace_seconds: float) -> None:
        """Let running jobs finish for up to `grace_seconds`, then force-close; the stalled-job check re-runs those."""
        async with self._close_lock:
            if self._closed:
                return
            self._closed = True
            graceful = asyncio.ensure_future(asyncio.gather(*(w.close() for w in self._workers.values())))
            done, _ = await asyncio.wait({graceful}, timeout=grace_seconds)
            if not done:
                await self._force_close(graceful, grace_seconds)
            elif graceful.exception() is not None:
                logger.error("closing workers failed", exc_info=graceful.exception())
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.gather(*(_release_connections(w) for w in self._workers.values()))
            logger.info("workers stopped", extra={"action": "workers_stopped"})

    async def _force_close(self, graceful: asyncio.Future[Any], grace_seconds: float) -> None:
        still_running = ", ".join(str(job) for job in self.running_jobs()) or "none"
        logger.warning(
            "workers did not stop within %g s; forcing. Still running: %s",
            grace_seconds,
            still_running,
            extra={"action": "workers_forced", "running": still_running},
        )
        await asyncio.gather(*(w.close(force=True) for w in self._workers.values()), return_exceptions=True)
        await asyncio.gather(graceful, return_exceptions=True)


async def _release_connections(worker: Worker) -> None:
    """Once a worker's run loop has ended: end the job fetches bullmq left behind, and close its connections
    again. Closed right after it started (verify stopped on a bad list just then), a worker can be left with a
    fetch in flight that reopens a connection closed under it, which nobody would close (closing twice is a
    no-op; a connection bullmq was lent is left alone)."""
    await cancel_and_wait(*(task for task in getattr(worker, "processing", ()) if not task.done()))
    backend = getattr(worker, "backend", None)
    owned = [getattr(backend, "blocking_connection", None)]
    if getattr(backend, "owns_connection", False):
        owned.append(getattr(backend, "connection", None))
    for connection in owned:
        if connection is not None:
            try:
                await connection.close()
            except Exception as exc:  # already lost: nothing is left open to close
                logger.debug("closing a worker connection: %s", exc, extra={"action": "worker_connection_closed"})


def build_workers(
    connection: Connection,
    prefix: str,
    tuning: Mapping[str, QueueTuning],
    processor: Processor,
    *,
    drain_delay_seconds: int,
    on_final_failure: FinalFailureHandler,
    name: str | None = None,
) -> WorkerPool:
    """One worker per queue in `tuning` (queue name -> QueueTuning), not yet started; `name` shows in Node's tools."""
    workers: dict[str, Worker] = {}
    for queue, queue_tuning in tuning.items():
        options = worker_options(connection, prefix, queue_tuning, drain_delay_seconds=drain_delay_seconds, name=name)
        worker = Worker(check_queue_name(queue), bullmq_processor(queue, processor, on_final_failure, prefix), options)
        worker.clientName = node_client_name(prefix, queue, name)  # set on its connections when it starts
        workers[queue] = worker
    return WorkerPool(workers)
