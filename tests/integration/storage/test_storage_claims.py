"""Submission slots are claimed atomically: never more than max_in_flight, from tasks or separate processes."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path

from bouncer_queue.domain import BatchState
from bouncer_queue.storage.records import EmailRow, RequestInfo
from bouncer_queue.storage.repository import ClaimResult, Repository

WORKER = Path(__file__).with_name("claim_worker.py")
MAX_IN_FLIGHT = 3


async def _pending_batches(repo: Repository, count: int) -> list[int]:
    chunks = [[EmailRow(email=f"a{i}@example.com")] for i in range(count)]
    return await repo.ingest_request(RequestInfo(request_id="race", user_id="u"), chunks)


async def test_concurrent_tasks_never_claim_more_than_max_in_flight(
    repo_factory: Callable[[], Repository],
) -> None:
    repos = [repo_factory() for _ in range(3)]
    batch_ids = await _pending_batches(repos[0], 12)

    attempts = [r.try_claim_submission(b, MAX_IN_FLIGHT) for b in batch_ids for r in repos]
    outcomes = await asyncio.gather(*attempts)

    assert outcomes.count(ClaimResult.CLAIMED) == MAX_IN_FLIGHT
    assert await repos[0].in_flight_count() == MAX_IN_FLIGHT
    claimed = await repos[0].batches_in_states([BatchState.SUBMITTING])
    assert [b.attempts for b in claimed] == [1] * MAX_IN_FLIGHT


async def test_separate_processes_never_claim_more_than_max_in_flight(
    repo: Repository, storage_url: str, tmp_path: Path
) -> None:
    batch_ids = [str(b) for b in await _pending_batches(repo, 10)]
    go_file = tmp_path / "go"
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            storage_url,
            str(MAX_IN_FLIGHT),
            str(go_file),
            *batch_ids,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    go_file.touch()
    outputs = [await p.communicate() for p in processes]

    assert [p.returncode for p in processes] == [0, 0, 0]
    claimed = [batch for stdout, _ in outputs for batch in json.loads(stdout)]
    assert len(claimed) == MAX_IN_FLIGHT
    assert len(set(claimed)) == MAX_IN_FLIGHT
    assert await repo.in_flight_count() == MAX_IN_FLIGHT
