"""Credits are checked before they are spent: --max-credits refuses a list before anything is stored (in its first
chunk; later, what fits goes on), two requests started together cannot both count on one balance, and a request
over the balance is held (never paid twice) until a top-up. Bouncer is the simulator over HTTP; what it charged is
read from its own state."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pipeline_support import (
    API_KEY,
    CLI,
    System,
    batch_states,
    create_calls,
    eventually,
    make_emails,
    recorded,
    sql,
    wait_until_done,
    write_csv,
)

from bouncer_queue import service
from bouncer_queue.credits.reservations import CreditLimit
from bouncer_queue.emails import dedup_key
from bouncer_queue.errors import CreditsRefused
from bouncer_queue.interfaces.cli_ops import _stats_json
from bouncer_queue.pipeline.ingest import CreditOptions
from bouncer_queue.pipeline.jobs import BATCH_DOWNLOAD
from bouncer_queue.storage import migrate
from bouncer_queue.storage.records import HealthMetric

BALANCE = 30


def _refused(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(CLI), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    return done


async def test_max_credits_refuses_a_list_before_anything_is_stored(system: System, tmp_path: Path) -> None:
    server = await system.simulator(credits=BALANCE)
    env = system.cli_env(server.base_url)
    listing = write_csv(tmp_path / "twelve.csv", [*make_emails(12, "capped"), "not-an-address"])

    capped = _refused(["verify", str(listing), "--max-credits", "11"], env, tmp_path)
    over_balance = _refused(["submit", str(write_csv(tmp_path / "big.csv", make_emails(31, "big")))], env, tmp_path)

    assert "needs 12 credits, more than --max-credits 11" in capped.stderr
    assert "needs 31 credits but 30 are available" in over_balance.stderr
    assert await sql(system.database_url, 'SELECT request_id FROM "Bouncer_Requests"') == []
    assert create_calls(server) == []
    assert server.state.credits_of(API_KEY) == BALANCE


async def test_two_requests_started_together_cannot_both_count_on_one_balance_on_sqlite(system: System) -> None:
    await _race(system)


@pytest.mark.postgres
async def test_two_requests_started_together_cannot_both_count_on_one_balance_on_postgresql(
    system: System, database: str
) -> None:
    system.database_url = database
    await migrate.upgrade(database)
    await _race(system)


async def _race(system: System) -> None:
    server = await system.simulator(credits=BALANCE)
    settings = system.settings(server.base_url, batch_size=10)
    # Both read the same balance before either is stored, as two `submit`s started together do.
    limit = CreditOptions(check=CreditLimit(datetime.now(UTC), available=BALANCE))
    async with system.pipeline(settings, workers=False) as manager:
        outcomes = await asyncio.gather(
            manager.add_emails_to_queue(make_emails(20, "first"), "u1", credits=limit),
            manager.add_emails_to_queue(make_emails(20, "second"), "u2", credits=limit),
            return_exceptions=True,
        )
    refused = [o for o in outcomes if isinstance(o, CreditsRefused)]
    assert len(refused) == 1, outcomes
    assert "needs 20 credits but 10 are available" in str(refused[0])
    assert "20 of them held by requests not yet submitted" in str(refused[0])
    # The check runs with each chunk (streamed ingest): the refused request keeps the chunks that fit, if any,
    # `ingesting` until it is resumed; the other is whole. Together they never count on more than the balance.
    requests = await sql(system.database_url, 'SELECT request_id, status, billable FROM "Bouncer_Requests"')
    whole = [r for r in requests if r.status == "active"]
    assert len(whole) == 1 and whole[0].billable == 20
    assert [r.status for r in requests if r not in whole] in ([], ["ingesting"])
    committed = sum(r.billable for r in requests)
    assert committed <= BALANCE
    async with system.pipeline(settings) as manager:
        await wait_until_done(manager, whole[0].request_id)

        async def all_sent() -> bool:
            return set((await batch_states(system.database_url)).values()) == {"downloaded"}

        await eventually(all_sent, "every stored batch downloaded")
    assert BALANCE - server.state.credits_of(API_KEY) == committed


async def test_with_no_credits_call_to_spare_the_check_counts_on_the_balance_a_health_check_recorded(
    system: System,
) -> None:
    """Bouncer answers 10 credit checks a minute, which health checks and every submission share: when none is
    left, a submission is checked against the newest recorded balance, dated a margin earlier (every batch sent
    since counts as held), instead of going unchecked."""
    server = await system.simulator(credits=BALANCE)
    settings = system.settings(server.base_url, rate_limit_window_seconds=3_600, rate_limit_credits_max=2)
    async with system.pipeline(settings, workers=False) as manager:
        rt = manager.runtime
        recorded_at = datetime.now(UTC)
        await rt.repo.record_health_metric(HealthMetric("healthy", {}, recorded_at=recorded_at), {"credits_left": 12})
        while (await rt.limiter.acquire(["credits"], "credits")).allowed:
            pass  # the credits budget is spent for the hour
        credits, balance = await manager.credit_options()
        with pytest.raises(CreditsRefused, match="needs 20 credits but 12 are available"):
            await manager.add_emails_to_queue(make_emails(20, "late"), "u1", credits=credits)
    assert (balance.at_bouncer, balance.checked_at) == (12, recorded_at - timedelta(seconds=60))
    assert [group for _, group in recorded(server).arrivals if group == "credits"] == []  # no call was made
    assert await sql(system.database_url, 'SELECT request_id FROM "Bouncer_Requests"') == []


async def test_a_balance_read_serves_the_next_submissions_for_a_while_with_its_date(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server taking many lists asks Bouncer once per BALANCE_REUSE_SECONDS, not once a list: the credits budget
    (10 a minute) is left to the health checks, which reopen the credits gate after a top-up."""
    monkeypatch.setattr(service, "BALANCE_REUSE_SECONDS", 3_600.0)
    server = await system.simulator(credits=BALANCE)
    async with system.pipeline(system.settings(server.base_url, batch_size=10), workers=False) as manager:
        first = (await manager.credit_options())[1]
        await manager.add_emails_to_queue(make_emails(10, "held"), "u1", credits=(await manager.credit_options())[0])
        again = (await manager.credit_options())[1]
    assert [group for _, group in recorded(server).arrivals if group == "credits"] == ["credits"]
    assert (again.checked_at, again.at_bouncer) == (first.checked_at, BALANCE)
    assert (first.reserved, again.reserved) == (0, 10)  # what others hold is counted afresh each time


async def test_a_request_over_the_balance_is_held_until_a_top_up_and_nothing_is_paid_twice(system: System) -> None:
    server = await system.simulator(credits=BALANCE)
    settings = system.settings(server.base_url, batch_size=10, email_verification_concurrency=1)
    partial = CreditOptions(check=CreditLimit(datetime.now(UTC), available=BALANCE, allow_partial=True))
    async with system.pipeline(settings) as manager:
        # No batch is downloaded until the reports are read: a request whose batches are all downloaded is
        # finished, and the reports count the requests still under way (on a busy machine or a quick one alike).
        await manager.pause_queue(BATCH_DOWNLOAD)
        first = await manager.add_emails_to_queue(make_emails(20, "first"), "u1", credits=partial)
        second = await manager.add_emails_to_queue(make_emails(20, "second"), "u2", credits=partial)
        gate = manager.runtime.credits_gate

        async def held() -> bool:
            states = list((await batch_states(system.database_url)).values())
            return await gate.is_closed() and states.count("pending") == 1 and "submitting" not in states

        await eventually(held, "three batches paid, the fourth held behind the credits gate")
        assert server.state.credits_of(API_KEY) == 0
        progress = [await manager.request_progress(r.request_id) for r in (first, second)]
        assert sorted((p.credits_spent, p.credits_to_spend) for p in progress) == [(10, 10), (20, 0)]
        health = (await manager.get_health_status(live=True)).to_dict()["snapshot"]["credits"]
        stats = (await _stats_json(manager))["credits"]
        for report in (health, stats):
            assert (report["reserved"], report["spent"]) == (10, 30)
            assert sorted(report["requests"].values(), key=lambda r: r["spent"]) == [
                {"billable": 20, "reserved": 10, "spent": 10},
                {"billable": 20, "reserved": 0, "spent": 20},
            ]
        assert (health["at_bouncer"], health["available"]) == (0, -10)
        assert await gate.is_closed()

        async with httpx.AsyncClient() as http:
            topped = await http.post(
                f"{server.root_url}/__simulator/credits", json={"api_key": API_KEY, "credits": 100}
            )
        topped.raise_for_status()
        await manager.get_health_status(live=True)  # what the scheduled health check does: the gate reopens
        await manager.resume_queue(BATCH_DOWNLOAD)
        await wait_until_done(manager, first.request_id)
        await wait_until_done(manager, second.request_id)

    assert server.state.credits_of(API_KEY) == 100 - 10
    sent = Counter(dedup_key(email) for batch in recorded(server).created for email in batch)
    assert len(sent) == 40 and set(sent.values()) == {1}
    assert create_calls(server).count(200) == 4
