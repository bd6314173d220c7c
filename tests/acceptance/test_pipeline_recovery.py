"""Recovery from a Redis loss (project issue #4, part 5): the ledger alone is enough to finish every request.

The workers are stopped with one batch done, one at Bouncer and one not yet sent; then every key of the test's
prefix is deleted from Redis (and nothing else). `bouncer-queue recover` rebuilds the jobs from the database, and
the workers finish the request without creating any batch twice.
"""

from __future__ import annotations

import pytest
from pipeline_support import (
    System,
    assert_results_match_simulator,
    batch_states,
    create_calls,
    dead_letters,
    delete_prefix_keys,
    eventually,
    make_emails,
    run_cli,
    wait_until_done,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

_AT_BOUNCER = {"submitting", "queued", "processing", "completed"}


async def test_recover_after_redis_lost_every_key(system: System) -> None:
    server = await system.simulator(speed=10.0)  # 2 s per batch of 20, so the pipeline can be caught mid-way
    settings = system.settings(server.base_url, max_concurrent_batches=1)
    async with system.pipeline(settings) as manager:
        added = await manager.add_emails_to_queue(make_emails(60, "recover"), "u1")

        async def mid_way() -> bool:
            states = list((await batch_states(system.database_url)).values())
            return "downloaded" in states and "pending" in states and bool(_AT_BOUNCER & set(states))

        await eventually(mid_way, "one batch done, one at Bouncer, one pending")

    unfinished = [s for s in (await batch_states(system.database_url)).values() if s != "downloaded"]
    assert await delete_prefix_keys(system.redis_url, system.prefix) > 0
    async with system.pipeline(settings, workers=False) as manager:
        stats = await manager.get_queue_stats()
        assert all(count == 0 for queue in stats.values() for count in queue.values()), stats

    env = system.cli_env(server.base_url)
    output = run_cli(["recover"], env, system.tmp_path)
    assert f"{len(unfinished)} jobs offered" in output

    async with system.pipeline(settings) as manager:
        await wait_until_done(manager, added.request_id)

    assert create_calls(server) == [200, 200, 200]
    assert server.state.batch_creations == 3
    assert await dead_letters(system.database_url) == []
    await assert_results_match_simulator(system.database_url, added.request_id, 60)


async def test_running_workers_heal_a_redis_that_lost_every_key(system: System) -> None:
    server = await system.simulator(speed=10.0)
    settings = system.settings(server.base_url, max_concurrent_batches=1, reconcile_interval_seconds=1)
    async with system.pipeline(settings) as manager:
        added = await manager.add_emails_to_queue(make_emails(60, "heal"), "u1")

        async def mid_way() -> bool:
            states = set((await batch_states(system.database_url)).values())
            return "downloaded" in states and "pending" in states

        await eventually(mid_way, "one batch done, one still pending")
        # Redis restarted without persistence, say: every job and scheduler of ours is gone, the workers go on.
        assert await delete_prefix_keys(system.redis_url, system.prefix) > 0
        await wait_until_done(manager, added.request_id)

    assert server.state.batch_creations == 3
    assert create_calls(server) == [200, 200, 200]
    await assert_results_match_simulator(system.database_url, added.request_id, 60)
