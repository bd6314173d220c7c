"""Rebuild the queues from the ledger: Redis holds work in flight and may lose everything; the database does not.

For every batch that is not finished, enqueue the job its state calls for: pending -> create, submitting with
Bouncer's id known -> status check, queued/processing -> status check, completed -> download, failed -> retry.
Job ids are deterministic (see jobs.py), so running this while the jobs still wait or run adds nothing; a job
that already ended (failed: say its dead letter could not be written while the database was away; or
completed while its batch still needs it) is replaced by a fresh one, so it cannot block its batch. Every
stage reads the batch's state first, so an extra run is a no-op. A batch left `submitting` without Bouncer's
id gets its create-batch job too, which dead-letters it as SubmissionOutcomeUnknown rather than paying twice.
Requests whose batches are all downloaded or dead are marked finished on the way.
"""

from __future__ import annotations

import logging

from bouncer_queue.domain import BatchState
from bouncer_queue.pipeline import jobs
from bouncer_queue.pipeline.context import StageContext
from bouncer_queue.pipeline.ports import JobSpec
from bouncer_queue.storage.records import BatchRecord

log = logging.getLogger(__name__)


def job_for(batch: BatchRecord) -> JobSpec | None:
    """The job that moves a batch on from its current state, or None when it is finished."""
    b = batch
    if b.status == BatchState.SUBMITTING and b.bouncer_batch_id is not None:
        return jobs.check_status(b.id, b.request_id, b.priority, 0, b.retries)
    if b.status in (BatchState.PENDING, BatchState.SUBMITTING):
        return jobs.create_batch(b.id, b.request_id, b.priority, 0, b.retries)
    if b.status in (BatchState.QUEUED, BatchState.PROCESSING):
        return jobs.check_status(b.id, b.request_id, b.priority, 0, b.retries)
    if b.status == BatchState.COMPLETED:
        return jobs.download(b.id, b.request_id, b.priority, b.retries)
    if b.status == BatchState.FAILED:
        return jobs.retry_failed(b.id, b.request_id, b.priority, b.retries)
    return None


async def recover(ctx: StageContext) -> int:
    """Enqueue the next job of every unfinished batch; returns how many jobs were offered to the queues."""
    open_states = [s for s in BatchState if s not in (BatchState.DOWNLOADED, BatchState.DEAD, BatchState.CANCELLED)]
    batches = await ctx.repo.batches_in_states(open_states)
    specs = [spec for spec in map(job_for, batches) if spec is not None]
    replaced = await ctx.enqueuer.enqueue_again(specs) if specs else 0
    await ctx.repo.finish_requests()
    # DEBUG: the workers reconcile every minute, and nearly every offer is a no-op for a job that exists.
    log.debug("recovery offered %d jobs from the ledger", len(specs), extra={"action": "recovered", "jobs": len(specs)})
    if replaced:
        log.warning(
            "recovery restarted %d jobs that had ended before their batch was done",
            replaced,
            extra={"action": "jobs_restarted", "jobs": replaced},
        )
    return len(specs)
