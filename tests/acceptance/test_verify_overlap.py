"""`verify` runs its workers while it stores the list: the first batch reaches Bouncer before the last chunk is
stored, and a list that stops being stored half way (a refusal, a row that cannot be read) still ends verify with
its error, the workers stopped, and the stored part resumable by the next run.

Nothing here measures time: the first test holds the list's last chunk back until the simulator's own log shows a
create (a verify that started its workers after the list would never get there), the others judge the ledger and
the simulator's log after the command exited.
"""

from __future__ import annotations

import asyncio
import gc
import io
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pipeline_support import (
    BATCH_PATH,
    System,
    assert_exactly_once,
    batch_states,
    eventually,
    make_emails,
    recorded,
    run_cli_status,
    sql,
    write_csv,
)
from rich.console import Console
from rich.progress import Progress

from bouncer_queue.interfaces import runner
from bouncer_queue.interfaces.runner import OutputOptions, SubmitOptions, verify_file

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SIZE = 20
CHUNKS = 5
CREDITS = 1_000_000


def _creates(server: Any) -> int:
    """Batch creates Bouncer answered, from the simulator's own log (/__simulator/requests)."""
    log = httpx.get(f"{server.root_url}/__simulator/requests", timeout=10).json()
    return sum(1 for r in log if r["method"] == "POST" and r["path"] == BATCH_PATH and r["status"] < 300)


async def test_the_first_batch_is_created_before_the_last_chunk_is_stored(
    system: System, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await system.simulator()
    settings = system.settings(server.base_url, batch_size=SIZE)
    emails = make_emails(SIZE * CHUNKS, "early")
    listing = write_csv(tmp_path / "early.csv", emails)
    url = system.database_url
    at_hold: dict[str, Any] = {}

    async def created() -> bool:
        return _creates(server) > 0

    def held(items: Iterable[Any], bar: Progress, check: Callable[[], object] | None = None) -> AsyncIterator[Any]:
        """The list's rows, the last chunk's only once Bouncer has a batch of this request."""

        async def rows() -> AsyncIterator[Any]:
            for n, row in enumerate(items):
                if n == SIZE * (CHUNKS - 1):
                    await eventually(created, "a batch created while the list was being stored")
                    [request] = await sql(url, 'SELECT status, batch_count FROM "Bouncer_Requests"')
                    at_hold.update(status=request.status, batches=request.batch_count, creates=_creates(server))
                yield row

        return rows()

    monkeypatch.setattr(runner, "counting", held)
    out = tmp_path / "early.verified.csv"
    try:
        outcome = await verify_file(settings, listing, SubmitOptions(), Console(file=io.StringIO()), OutputOptions(out))
    finally:
        gc.unfreeze()  # verify freezes what lives at its start: this process is the test's

    assert at_hold["status"] == "ingesting"  # the list was not stored whole yet...
    assert at_hold["batches"] == CHUNKS - 1
    assert 1 <= at_hold["creates"] <= CHUNKS - 1  # ...and Bouncer already had work from it
    assert outcome.total == len(emails)
    assert sorted(e for batch in recorded(server).created for e in batch) == sorted(emails)  # each address sent once
    assert set((await batch_states(url)).values()) == {"downloaded"}
    assert out.read_text(encoding="utf-8").count("\n") == len(emails) + 1


def _env(system: System, server: Any) -> dict[str, str]:
    return system.cli_env(
        server.base_url,
        BATCH_SIZE=SIZE,
        POLL_INTERVAL_SECONDS=0.3,
        SHUTDOWN_GRACE_SECONDS=10,
        LOG_LEVEL="INFO",  # the workers' start and stop lines
    )


def _assert_stopped_cleanly(output: str) -> None:
    """Exited on its error, with no task left behind and no traceback; workers that started also stopped."""
    assert "Traceback" not in output and "was never retrieved" not in output and "destroyed but" not in output
    assert output.count("workers stopped") == output.count("workers started")


async def _request(url: str) -> Any:
    [request] = await sql(url, 'SELECT request_id, status, total_emails, batch_count FROM "Bouncer_Requests"')
    return request


async def test_a_refusal_half_way_exits_with_its_error_and_the_next_run_stores_the_rest(
    system: System, tmp_path: Path
) -> None:
    server = await system.simulator(credits=CREDITS)
    env = _env(system, server)
    emails = make_emails(SIZE * CHUNKS, "capped")
    listing = write_csv(tmp_path / "capped.csv", emails)
    command = ["verify", str(listing)]

    code, output = await run_in_thread([*command, "--max-credits", str(2 * SIZE + 5)], env, tmp_path)

    assert code == 1, output
    assert f"this list needs {3 * SIZE} credits, more than --max-credits {2 * SIZE + 5}" in output
    assert f"the {2 * SIZE} addresses before it are stored as request" in output
    _assert_stopped_cleanly(output)
    stored = await _request(system.database_url)
    assert (stored.status, stored.total_emails, stored.batch_count) == ("ingesting", 2 * SIZE, 2)
    assert not (tmp_path / "capped.verified.csv").exists()
    assert len(recorded(server).created) <= 2  # what Bouncer got is what was stored

    code, output = await run_in_thread(command, env, tmp_path)  # credits allow now: the rest is stored
    assert code == 0, output
    assert f"this list was being stored as request {stored.request_id}" in output
    assert (await _request(system.database_url)).status == "finished"
    await assert_exactly_once(system.database_url, server, emails, CREDITS)


async def test_a_row_that_cannot_be_read_half_way_exits_with_its_error_and_keeps_the_stored_part(
    system: System, tmp_path: Path
) -> None:
    server = await system.simulator(credits=CREDITS)
    env = _env(system, server)
    emails = make_emails(SIZE * 3, "broken")
    listing = write_csv(tmp_path / "broken.csv", emails)
    with listing.open("a", encoding="utf-8") as handle:
        handle.write('"x,y\n' + "a,b\n" * 200)  # a quote never closed: the reader gives up 100 lines on

    code, output = await run_in_thread(["verify", str(listing)], env, tmp_path)

    assert code == 1, output
    assert "unbalanced quote" in output
    _assert_stopped_cleanly(output)
    stored = await _request(system.database_url)
    assert (stored.status, stored.total_emails, stored.batch_count) == ("ingesting", 3 * SIZE, 3)
    sent = [e for batch in recorded(server).created for e in batch]
    assert set(sent) <= set(emails) and len(sent) == len(set(sent))  # only stored rows, each once
    states = set((await batch_states(system.database_url)).values())
    assert states and "dead" not in states  # left for the next run, not given up on


async def run_in_thread(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    return await asyncio.to_thread(run_cli_status, args, env, cwd, 180)
