"""Job name -> stage: the one table the workers use to run a job, and the dead-letter hook they call.

A database that does not answer (DatabaseUnavailable, translated once by the storage boundary) is a pause,
not a failure: the job is deferred, spending no attempt and dead-lettering nothing, with a backoff that
doubles from DB_WAIT_FIRST_MS to DB_WAIT_MAX_MS while the outage lasts, and resets once any job gets through.

A key Bouncer refuses (401, 403) is no fault of the batch either: whichever stage meets it closes the auth gate
and defers; while the gate is closed, the jobs that call Bouncer wait without calling it. Rotating the key
reopens the gate (queueing/flags.py), and they carry on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bouncer_queue.bouncer import AuthError, Forbidden
from bouncer_queue.errors import DatabaseUnavailable
from bouncer_queue.pipeline import jobs
from bouncer_queue.pipeline.context import StageContext
from bouncer_queue.pipeline.deadletter import dead_letter
from bouncer_queue.pipeline.download import download_batch_results
from bouncer_queue.pipeline.housekeeping import Housekeeping
from bouncer_queue.pipeline.outcomes import Defer, PermanentFailure
from bouncer_queue.pipeline.poll import check_batch_status
from bouncer_queue.pipeline.retry import retry_failed_batch
from bouncer_queue.pipeline.submit import create_batch

Handler = Callable[[Mapping[str, Any]], Awaitable[Any]]

log = logging.getLogger(__name__)
_KEY_REFUSED = {"action": "api_key_refused"}

_CALLS_BOUNCER = frozenset({jobs.CREATE_BATCH, jobs.CHECK_BATCH_STATUS, jobs.DOWNLOAD_BATCH_RESULTS})
DB_WAIT_FIRST_MS = 1_000
DB_WAIT_MAX_MS = 30_000


class OutageBackoff:
    """How long a job waits for the database: doubling per failed job while it is away, reset when it answers."""

    def __init__(self, first_ms: int = DB_WAIT_FIRST_MS, max_ms: int = DB_WAIT_MAX_MS) -> None:
        self._first_ms = first_ms
        self._max_ms = max_ms
        self._next_ms = first_ms

    def next_wait_ms(self) -> int:
        wait, self._next_ms = self._next_ms, min(self._next_ms * 2, self._max_ms)
        return wait

    def reset(self) -> None:
        self._next_ms = self._first_ms


class Dispatcher:
    """Runs a job by its name, and dead-letters the ones that fail for good."""

    def __init__(self, ctx: StageContext, housekeeping: Housekeeping) -> None:
        self._ctx = ctx
        self._outage = OutageBackoff()
        self._handlers: dict[str, Handler] = {
            jobs.CREATE_BATCH: lambda d: create_batch(ctx, d),
            jobs.RETRY_FAILED_BATCH: lambda d: retry_failed_batch(ctx, d),
            jobs.CHECK_BATCH_STATUS: lambda d: check_batch_status(ctx, d),
            jobs.DOWNLOAD_BATCH_RESULTS: lambda d: download_batch_results(ctx, d),
            jobs.CLEANUP_RATE_LIMITS: housekeeping.cleanup_rate_limits,
            jobs.HEALTH_CHECK: housekeeping.run_health_check,
        }

    async def run(self, job_name: str, data: Mapping[str, Any]) -> Any:
        handler = self._handlers.get(job_name)
        if handler is None:
            raise PermanentFailure("UnknownJob", f"no stage handles jobs named {job_name!r}")
        auth_gate = self._ctx.auth_gate
        try:
            if job_name in _CALLS_BOUNCER and await auth_gate.is_closed():
                raise Defer(self._ctx.policy.auth_wait_ms, "Bouncer refused the API key")
            result = await handler(data)
        except DatabaseUnavailable as exc:
            raise Defer(self._outage.next_wait_ms(), f"waiting for the database: {exc}") from exc
        except (AuthError, Forbidden) as exc:
            await auth_gate.close(str(exc))
            log.error("Bouncer refused the API key: %s; nothing is sent until it changes", exc, extra=_KEY_REFUSED)
            raise Defer(self._ctx.policy.auth_wait_ms, "Bouncer refused the API key") from exc
        self._outage.reset()
        return result

    async def on_final_failure(
        self, queue: str, job_name: str, data: Mapping[str, Any], error: BaseException, attempts: int
    ) -> None:
        await dead_letter(self._ctx, queue, job_name, data, error, attempts)
