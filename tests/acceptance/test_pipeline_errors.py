"""Every error class the simulator can produce leads to the seed's behaviour (project issue #4, part 2).

Each test runs the real workers in this process (QueueManager + run_workers) on the test Redis under its own
prefix and a SQLite file, against a simulator on a loopback port shaped to produce one error class:

- 429: the job defers (no attempt spent) until Bouncer takes the batch;
- 402: the batch stays pending, the credits gate closes, and a top-up + health check resumes it by itself;
- 5xx: retried with exponential backoff, then it succeeds;
- network error: retried, then dead-lettered after JOB_ATTEMPTS;
- other 4xx (400): dead-lettered at once, one attempt made (401/403 close the auth gate: test_exactly_once.py);
- a batch left `submitting`: dead-lettered as SubmissionOutcomeUnknown and never sent again (never pay twice).
"""

from __future__ import annotations

import dataclasses
import itertools
import socket
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pipeline_support import (
    API_KEY,
    System,
    assert_results_match_simulator,
    batch_states,
    create_calls,
    dead_letters,
    eventually,
    make_emails,
    recorded,
    sql,
    wait_until_done,
)

from bouncer_queue.queueing.names import DEAD_LETTER, EMAIL_VERIFICATION

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_429_defers_without_spending_attempts(system: System) -> None:
    # Bouncer takes one create per 3 s window; our own limiter would allow far more, so Bouncer answers 429.
    server = await system.simulator(create_limit=1, window_seconds=3)
    settings = system.settings(
        server.base_url, rate_limit_window_seconds=3, email_verification_concurrency=3, job_attempts=2
    )
    emails = make_emails(60, "limited")
    async with system.pipeline(settings) as manager:
        added = await manager.add_emails_to_queue(emails, "u1")
        await wait_until_done(manager, added.request_id)

    statuses = create_calls(server)
    # With JOB_ATTEMPTS=2, two 429s spent as attempts would have dead-lettered a batch.
    assert statuses.count(429) >= 2
    assert statuses.count(200) == 3 == server.state.batch_creations
    assert await dead_letters(system.database_url) == []
    for batch_id in added.batch_ids:
        job = await system.job(EMAIL_VERIFICATION, f"create-{batch_id}-r0")
        assert job is not None and job.attemptsMade == 1  # the successful run; the deferrals spent none
    await assert_results_match_simulator(system.database_url, added.request_id, 60)


async def test_402_holds_submissions_until_a_top_up_and_nothing_is_sent_twice(system: System) -> None:
    server = await system.simulator(credits=0)
    settings = system.settings(server.base_url, email_verification_concurrency=1)
    emails = make_emails(40, "credits")
    async with system.pipeline(settings) as manager:
        added = await manager.add_emails_to_queue(emails, "u1")
        gate = manager.runtime.credits_gate

        async def held() -> bool:
            counts = await manager.get_queue_stats()
            return await gate.is_closed() and counts[EMAIL_VERIFICATION]["delayed"] == 2

        await eventually(held, "both batches held behind the closed credits gate")
        assert await dead_letters(system.database_url) == []
        assert create_calls(server) == [402]  # the other batch was not sent while the gate was closed
        assert server.state.batch_creations == 0
        assert sorted((await batch_states(system.database_url)).values()) == ["pending", "pending"]

        async with httpx.AsyncClient() as http:
            # A few credits, fewer than the waiting batch costs: the gate stays closed (no second 402).
            few = await http.post(f"{server.root_url}/__simulator/credits", json={"api_key": API_KEY, "credits": 5})
            few.raise_for_status()
            await manager.get_health_status(live=True)
            assert await gate.is_closed()
            topped = await http.post(
                f"{server.root_url}/__simulator/credits", json={"api_key": API_KEY, "credits": 1_000}
            )
        topped.raise_for_status()
        await manager.get_health_status(live=True)
        assert not await gate.is_closed()
        await wait_until_done(manager, added.request_id)

    assert create_calls(server) == [402, 200, 200]
    assert server.state.batch_creations == 2
    assert set((await batch_states(system.database_url)).values()) == {"downloaded"}
    await assert_results_match_simulator(system.database_url, added.request_id, 40)


async def test_5xx_is_retried_with_backoff_until_it_succeeds(system: System) -> None:
    server = await system.simulator(fail_rate=1.0)
    settings = system.settings(server.base_url, job_attempts=8, job_backoff_ms=200)
    async with system.pipeline(settings) as manager:
        added = await manager.add_emails_to_queue(make_emails(20, "flaky"), "u1")

        async def failed_four_times() -> bool:
            return create_calls(server).count(503) >= 4

        await eventually(failed_four_times, "four 503 answers to the create call")
        server.state.config = dataclasses.replace(server.state.config, fail_rate=0.0)
        await wait_until_done(manager, added.request_id)

    statuses = create_calls(server)
    failures = statuses.count(503)
    assert statuses == [503] * failures + [200]
    assert server.state.batch_creations == 1
    assert await dead_letters(system.database_url) == []
    job = await system.job(EMAIL_VERIFICATION, f"create-{added.batch_ids[0]}-r0")
    assert job is not None and job.attemptsMade == failures + 1
    # Exponential backoff: bullmq waits 200 ms, 400 ms, 800 ms ... before the next attempt. Only lower bounds are
    # checked, and a busy machine can only make the gaps longer.
    arrivals = [t for t, group in recorded(server).arrivals if group == "create"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    for attempt, gap in enumerate(gaps[:3]):
        assert gap >= 0.9 * 0.2 * 2**attempt, gaps
    await assert_results_match_simulator(system.database_url, added.request_id, 20)


async def test_network_error_is_retried_then_dead_lettered(system: System) -> None:
    settings = system.settings(f"http://127.0.0.1:{closed_port()}/v1.1", job_attempts=3, job_backoff_ms=100)
    async with system.pipeline(settings) as manager:
        added = await manager.add_emails_to_queue(make_emails(20, "offline"), "u1")
        await wait_until_done(manager, added.request_id)
        dlq_waiting = (await manager.get_queue_stats())[DEAD_LETTER]["waiting"]

    [letter] = await dead_letters(system.database_url)
    assert (letter.error_class, letter.attempts, letter.batch_id) == ("BouncerUnavailable", 3, added.batch_ids[0])
    assert dlq_waiting == 1
    job = await system.job(EMAIL_VERIFICATION, f"create-{added.batch_ids[0]}-r0")
    assert job is not None and job.attemptsMade == 3
    assert await batch_states(system.database_url) == {added.batch_ids[0]: "dead"}


@pytest.mark.parametrize(
    ("simulator_config", "api_key", "error_class"),
    [
        pytest.param({"max_batch_size": 10}, API_KEY, "BadRequest", id="400-batch-too-large"),
    ],
)
async def test_other_4xx_fails_at_once(
    system: System, simulator_config: dict[str, int], api_key: str, error_class: str
) -> None:
    server = await system.simulator(**simulator_config)
    settings = system.settings(server.base_url, bouncer_api_key=api_key, job_attempts=5)
    async with system.pipeline(settings) as manager:
        added = await manager.add_emails_to_queue(make_emails(20, "refused"), "u1")
        await wait_until_done(manager, added.request_id)
        dlq_waiting = (await manager.get_queue_stats())[DEAD_LETTER]["waiting"]

    [letter] = await dead_letters(system.database_url)
    assert (letter.error_class, letter.attempts) == (error_class, 1)
    assert dlq_waiting == 1
    assert len(create_calls(server)) == 1
    assert server.state.batch_creations == 0
    job = await system.job(EMAIL_VERIFICATION, f"create-{added.batch_ids[0]}-r0")
    assert job is not None and job.attemptsMade == 1


async def test_batch_left_submitting_is_never_sent_again(system: System) -> None:
    server = await system.simulator()
    settings = system.settings(server.base_url)
    async with system.pipeline(settings, workers=False) as manager:
        added = await manager.add_emails_to_queue(make_emails(20, "crashed"), "u1")
    # As if a worker died during the create call a while ago: Bouncer may have created (and charged) the batch.
    claimed = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
    await sql(
        system.database_url,
        "UPDATE \"Bouncer_Batches\" SET status = 'submitting', updated_at = :claimed",
        claimed=claimed,
    )
    async with system.pipeline(settings) as manager:
        await wait_until_done(manager, added.request_id)

    [letter] = await dead_letters(system.database_url)
    assert letter.error_class == "SubmissionOutcomeUnknown"
    assert create_calls(server) == []
    assert server.state.batch_creations == 0
    assert await batch_states(system.database_url) == {added.batch_ids[0]: "dead"}
