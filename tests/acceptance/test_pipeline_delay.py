"""A delayed request waits out its delay (the seed's `addEmailsToQueue(..., {delay})`), whatever else completes.

A completing batch wakes the next create-batch job parked for a batch slot (queueing/waiters.py). Jobs the user
delayed sit in the same delayed set; none may be woken early. One batch slot makes every completion a wake-up.
"""

from __future__ import annotations

import pytest
from pipeline_support import System, make_emails, recorded, wait_until_done

from bouncer_queue.queueing.names import EMAIL_VERIFICATION

pytestmark = [pytest.mark.redis, pytest.mark.slow]

HOUR_MS = 3_600_000


async def test_a_delayed_request_is_not_sent_before_its_delay_while_other_batches_complete(system: System) -> None:
    server = await system.simulator()
    settings = system.settings(server.base_url, max_concurrent_batches=1)
    async with system.pipeline(settings) as manager:
        delayed = await manager.add_emails_to_queue(make_emails(40, "later"), "u1", priority="CRITICAL", delay=HOUR_MS)
        now = await manager.add_emails_to_queue(make_emails(100, "now"), "u2", priority="NORMAL")
        await wait_until_done(manager, now.request_id)
        progress = await manager.request_progress(delayed.request_id)
        waiting = [await system.job(EMAIL_VERIFICATION, f"create-{n}-r0") for n in (1, 2)]

    created_by = [{email.partition(".")[0] for email in batch} for batch in recorded(server).created]
    assert created_by == [{"now"}] * 5
    assert progress.batches_by_state == {"pending": 2}
    assert all(job is not None and job.delay == HOUR_MS for job in waiting)  # never promoted
