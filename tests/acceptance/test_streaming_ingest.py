"""Streaming ingest (issue #9): each chunk is stored and sent while the rest of the list is still being read, and
an address repeated in a later chunk still goes to Bouncer once (issue #8), wherever its first occurrence is.

The list is an async source that waits, between chunks, for the pipeline to reach a state: so a repeat meets its
first occurrence's batch downloaded, at Bouncer, or pending, deterministically. Counts come from the simulator.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from pipeline_support import System, batch_states, eventually, recorded, sql

from bouncer_queue.domain import RequestState
from bouncer_queue.service import QueueManager
from bouncer_queue.storage import migrate

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SIZE = 20


def tagged(tag: str, count: int = SIZE) -> list[str]:
    return [f"{tag}{i}@example.com" for i in range(count)]


async def test_repeats_join_their_first_occurrence_in_every_state_while_workers_run(system: System) -> None:
    await repeats_while_workers_run(system)


@pytest.mark.postgres
async def test_the_same_on_postgresql(system: System, database: str) -> None:
    # Row locks (FOR UPDATE) are real there; SQLite has one writer.
    system.database_url = database
    await migrate.upgrade(database)
    await repeats_while_workers_run(system)


async def repeats_while_workers_run(system: System) -> None:
    # 20 addresses at 10 a second: 2 s a batch, one at a time, so a batch can be caught at Bouncer.
    server = await system.simulator(speed=10.0)
    settings = system.settings(server.base_url, batch_size=SIZE, max_concurrent_batches=1)
    url = system.database_url

    async def states_of(request_id: str) -> list[str]:
        rows = await sql(url, 'SELECT status FROM "Bouncer_Batches" WHERE request_id = :r ORDER BY id', r=request_id)
        return [row.status for row in rows]

    async def until(check: Callable[[list[str]], bool], what: str) -> None:
        async def reached() -> bool:
            [(request_id,)] = await sql(url, 'SELECT request_id FROM "Bouncer_Requests"')
            return check(await states_of(request_id))

        await eventually(reached, what, timeout=60)

    def at_bouncer_after_one_done(states: list[str]) -> bool:
        # Either of the first two batches may go first (one priority): one downloaded, the other at Bouncer.
        return "downloaded" in states and bool({"queued", "processing"} & set(states))

    first, second, third, fourth = tagged("a"), tagged("b"), tagged("c"), tagged("d")
    chunks: list[tuple[Callable[[], Awaitable[None]] | None, list[str]]] = [
        (None, first),  # batch 1
        (None, second),  # batch 2, pending while batch 1 runs (one slot), or the other way round
        # One of them downloaded: its repeats are settled from its stored results at once. The other at Bouncer:
        # its repeats join it there, and are settled by its download.
        (
            lambda: until(at_bouncer_after_one_done, "batch 1 downloaded, batch 2 at Bouncer"),
            [e.upper() for e in first[:7]] + [e.title() for e in second[:6]] + third[:7],
        ),
        (None, [*third[7:], third[0].upper(), third[1], *fourth[:5]]),  # repeats of a pending batch
        (None, [*fourth[5:], first[10], second[10], fourth[0].upper(), *tagged("e", 3), "E0@Example.com"]),
    ]
    rows = [email for _, part in chunks for email in part]

    async def source() -> AsyncIterator[str]:
        for wait, part in chunks:
            if wait is not None:
                await wait()
            for email in part:
                yield email

    async with system.pipeline(settings) as manager:
        added = await manager.add_emails_to_queue(source(), "u1")
        assert (await manager.get_request(added.request_id)).status != RequestState.INGESTING  # type: ignore[union-attr]
        await eventually(lambda: _done(manager, added.request_id), "request done", timeout=120)

    unique = {e.lower() for e in rows}
    sent = Counter(email.lower() for batch in recorded(server).created for email in batch)
    assert set(sent) == unique
    assert set(sent.values()) == {1}  # each unique address reached Bouncer exactly once
    outcomes = await sql(url, 'SELECT status, COUNT(*) AS n FROM "Bouncer_Queue" GROUP BY status')
    assert {row.status: row.n for row in outcomes} == {"completed": len(rows)}  # every input row answered
    joined = await sql(
        url,
        'SELECT COUNT(*) AS n FROM "Bouncer_Queue" q JOIN "Bouncer_Results" r '
        "ON r.request_id = q.request_id AND r.email = lower(q.email)",
    )
    assert joined[0].n == len(rows)  # each row finds its one result by its key
    assert len(await sql(url, 'SELECT id FROM "Bouncer_Results"')) == len(unique)
    assert set((await batch_states(url)).values()) == {"downloaded"}
    [(status,)] = await sql(url, 'SELECT status FROM "Bouncer_Requests"')
    assert status == "finished"


async def _done(manager: QueueManager, request_id: str) -> bool:
    return (await manager.request_progress(request_id)).done
