"""Priority (project issue #4, part 3): a CRITICAL request submitted after LOW ones reaches Bouncer first.

The email-verification queue is paused while the requests are submitted (LOW, then NORMAL, then CRITICAL), and one
worker slot takes them in turn once it resumes; the simulator notes which addresses each created batch held.
"""

from __future__ import annotations

import pytest
from pipeline_support import System, make_emails, recorded, wait_until_done

from bouncer_queue.queueing.names import EMAIL_VERIFICATION

pytestmark = [pytest.mark.redis, pytest.mark.slow]


async def test_critical_request_reaches_bouncer_before_earlier_low_ones(system: System) -> None:
    server = await system.simulator()
    settings = system.settings(server.base_url, email_verification_concurrency=1)
    async with system.pipeline(settings) as manager:
        await manager.pause_queue(EMAIL_VERIFICATION)
        requests = [
            await manager.add_emails_to_queue(make_emails(40, "low"), "u1", priority="LOW"),
            await manager.add_emails_to_queue(make_emails(20, "normal"), "u2", priority="NORMAL"),
            await manager.add_emails_to_queue(make_emails(20, "critical"), "u3", priority="CRITICAL"),
        ]
        await manager.resume_queue(EMAIL_VERIFICATION)
        for added in requests:
            await wait_until_done(manager, added.request_id)

    created_by = [{email.partition(".")[0] for email in batch} for batch in recorded(server).created]
    assert created_by == [{"critical"}, {"normal"}, {"low"}, {"low"}]
