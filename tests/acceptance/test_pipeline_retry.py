"""A batch Bouncer fails is re-submitted, up to MAX_BATCH_RETRIES times, then dead-lettered (project issue #4).

check-batch-status treats the simulator's undocumented "failed" status (`batch_fail_rate`) as a failed batch and
hands it to retry-failed-batch, which creates it again at Bouncer (a new paid batch, `retries` + 1) or, past the
limit, dead-letters it as BatchRetriesExhausted with its emails `dead`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
from pipeline_support import (
    API_KEY,
    System,
    assert_results_match_simulator,
    batch_states,
    create_calls,
    dead_letters,
    make_emails,
    recorded,
    sql,
    wait_until_done,
)

from bouncer_queue.queueing.names import DEAD_LETTER
from bouncer_queue.simulator import SimulatorServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def fail_first_batch_only(server: SimulatorServer) -> None:
    """Bouncer fails the first batch it creates and no later one.

    Whether a batch fails is drawn when it is created, so the rate drops to 0 right after that first create:
    waiting for the failure instead would race the pipeline's re-submission.
    """
    state = recorded(server)
    create = state.create_batch

    def create_then_stop_failing(key: str, entries: Sequence[tuple[str, str | None]], callback: str | None) -> Any:
        answer = create(key, entries, callback)
        state.config = dataclasses.replace(state.config, batch_fail_rate=0.0)
        return answer

    state.create_batch = create_then_stop_failing  # type: ignore[method-assign]


async def batch_retries(url: str) -> dict[int, int]:
    return {row.id: row.retries for row in await sql(url, 'SELECT id, retries FROM "Bouncer_Batches"')}


async def email_statuses(url: str, request_id: str) -> set[str]:
    rows = await sql(url, 'SELECT DISTINCT status FROM "Bouncer_Queue" WHERE request_id = :rid', rid=request_id)
    return {row.status for row in rows}


def simulator_statuses(server: SimulatorServer) -> list[str]:
    return [batch["status"] for batch in server.state.snapshot()["batches"]]


async def test_a_failed_batch_is_resubmitted_and_completes(system: System) -> None:
    server = await system.simulator(batch_fail_rate=1.0)
    fail_first_batch_only(server)
    settings = system.settings(server.base_url)
    async with system.pipeline(settings) as manager:
        added = await manager.add_emails_to_queue(make_emails(20, "retried"), "u1")
        await wait_until_done(manager, added.request_id)

    [batch_id] = added.batch_ids
    assert create_calls(server) == [200, 200]
    assert simulator_statuses(server) == ["failed", "completed"]
    assert recorded(server).created[0] == recorded(server).created[1]  # the same addresses, sent again
    assert await batch_retries(system.database_url) == {batch_id: 1}
    assert await batch_states(system.database_url) == {batch_id: "downloaded"}
    assert await dead_letters(system.database_url) == []
    await assert_results_match_simulator(system.database_url, added.request_id, 20)


async def test_a_batch_failing_every_time_is_dead_lettered_after_the_retries(system: System) -> None:
    server = await system.simulator(batch_fail_rate=1.0, credits=1_000)
    settings = system.settings(server.base_url, max_batch_retries=2)
    async with system.pipeline(settings) as manager:
        added = await manager.add_emails_to_queue(make_emails(20, "doomed"), "u1")
        await wait_until_done(manager, added.request_id)
        dlq_waiting = (await manager.get_queue_stats())[DEAD_LETTER]["waiting"]

    [batch_id] = added.batch_ids
    [letter] = await dead_letters(system.database_url)
    assert (letter.error_class, letter.batch_id) == ("BatchRetriesExhausted", batch_id)
    assert dlq_waiting == 1
    assert create_calls(server) == [200, 200, 200]  # the first submission and two retries, no more
    assert simulator_statuses(server) == ["failed"] * 3
    assert server.state.credits_of(API_KEY) == 1_000  # every failed batch was refunded
    assert await batch_states(system.database_url) == {batch_id: "dead"}
    assert await batch_retries(system.database_url) == {batch_id: 2}
    assert await email_statuses(system.database_url, added.request_id) == {"dead"}
