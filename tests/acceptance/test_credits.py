"""Credits end to end, as a user spends them: `estimate` and `verify` through the CLI, Bouncer simulated over HTTP.

A corpus with repeated addresses (differing case and whitespace), malformed and over-long addresses, blank rows
and addresses an earlier request verified costs exactly its unique, valid, uncached addresses, counted from the
simulator's own balance (/__simulator/state), and `estimate` said so beforehand; every row gets a result with
its source; verifying it again within the cache period costs nothing.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import httpx
import pytest
from pipeline_support import API_KEY, cli_env, recorded, running_simulator

from bouncer_queue.credits.prefilter import is_deliverable_syntax
from bouncer_queue.emails import dedup_key
from bouncer_queue.simulator import SimulatorConfig, SimulatorServer
from bouncer_queue.storage import migrate

pytestmark = [pytest.mark.slow]

BALANCE = 10_000
EARLIER = [f"earlier.{i}@example.com" for i in range(12)]
FRESH = [f"fresh.{i}@corp.example" for i in range(45)]
REPEATS = ["  FRESH.1@corp.example ", "Fresh.2@Corp.Example", "fresh.3@CORP.example", "EARLIER.0@example.com"]
MALFORMED = ["no-at-sign", "a..b@example.com", "user@acme.test", "x@y", '"quoted"@example.com']
OVERLONG = ["l" * 250 + "@example.com", "m" * 70 + "@example.com", "n@" + "d" * 250 + ".com"]


def _corpus() -> list[str]:
    """The rows' address cells, blanks included, in file order: repeats after their first spelling."""
    return [*FRESH[:20], *REPEATS, "", *MALFORMED, *EARLIER[:8], " ", *OVERLONG, *FRESH[20:], "", REPEATS[0]]


def _billable(corpus: list[str]) -> int:
    """Unique, valid by syntax, and not answered by the earlier request."""
    unique = {dedup_key(cell) for cell in corpus if cell.strip()}
    valid = {key for key in unique if is_deliverable_syntax(key)}
    return len(valid - set(EARLIER))


def _write(path: Path, cells: list[str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name"])
        writer.writerows([cell, f"row {n}"] for n, cell in enumerate(cells))
    return path


def _balance(server: SimulatorServer) -> int:
    """The account's balance as the simulator states it (one key, so one fingerprint)."""
    state = httpx.get(f"{server.root_url}/__simulator/state", timeout=10).json()
    [balance] = state["credits"].values()
    return int(balance)


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> str:
    from pipeline_support import run_cli

    return run_cli(args, env, cwd, timeout=240)


def _env(server: SimulatorServer, database_url: str, redis_url: str, prefix: str, tmp_path: Path) -> dict[str, str]:
    return cli_env(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "QUEUE_PREFIX": prefix,
            "BOUNCER_API_KEY": API_KEY,
            "BOUNCER_API_BASE_URL": server.base_url,
            "BOUNCER_QUEUE_STATE_DIR": tmp_path / "state",
            "BATCH_SIZE": 20,
            "POLL_INTERVAL_SECONDS": 0.3,
            "RATE_LIMIT_WINDOW_SECONDS": 6,
            "RATE_LIMIT_CREDITS_MAX": 50,
        }
    )


def _exported(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


async def _run_corpus(database_url: str, redis_url: str, prefix: str, tmp_path: Path) -> None:
    config = SimulatorConfig(api_keys=(API_KEY,), credits=BALANCE, speed=5_000.0, queue_delay_seconds=0.1)
    async with running_simulator(config) as server:
        env = _env(server, database_url, redis_url, prefix, tmp_path)
        _cli(["verify", str(_write(tmp_path / "earlier.csv", EARLIER))], env, tmp_path)
        before = _balance(server)
        assert BALANCE - before == len(EARLIER)

        corpus = _corpus()
        listing = _write(tmp_path / "corpus.csv", corpus)
        estimate = json.loads(_cli(["estimate", str(listing), "--json"], env, tmp_path))
        out = _cli(["verify", str(listing)], env, tmp_path)
        charged = before - _balance(server)

        assert charged == _billable(corpus) == estimate["billable"]
        assert f"billable: {charged} credits" in out  # verify printed the same summary before it started
        assert (estimate["blank_rows"], estimate["rows"]) == (3, len(corpus) - 3)
        assert estimate["credits_at_bouncer"] == before
        rows = _exported(tmp_path / "corpus.verified.csv")
        _assert_every_row_answered(rows, corpus)
        _assert_nothing_sent_twice(server)

        again = json.loads(_cli(["estimate", str(listing), "--json"], env, tmp_path))
        _cli(["verify", str(listing), "--new", "--force"], env, tmp_path)  # a new request: the cache answers
        assert (again["billable"], before - charged - _balance(server)) == (0, 0)


def _assert_every_row_answered(rows: list[dict[str, str]], corpus: list[str]) -> None:
    assert len(rows) == len(corpus)  # every row comes back, the blank ones as skipped
    answered = [row for row in rows if row["status"] != "skipped"]
    assert len(answered) == len([cell for cell in corpus if cell.strip()])
    assert all(row["status"] and row["source"] and row["verified_at"] for row in answered), rows
    by_source = Counter(row["source"] for row in answered)
    assert by_source["local"] == len(MALFORMED) + len(OVERLONG)
    assert set(by_source) == {"bouncer", "cache", "local"}
    local = {(row["status"], row["reason"]) for row in answered if row["source"] == "local"}
    assert local == {("undeliverable", "invalid_email")}
    assert {row["email"] for row in rows if row["source"] == "local"} >= set(OVERLONG)  # stored whole


def _assert_nothing_sent_twice(server: SimulatorServer) -> None:
    sent = Counter(dedup_key(email) for batch in recorded(server).created for email in batch)
    assert [key for key, times in sent.items() if times > 1] == []
    assert not any(key.startswith(("l" * 10, "m" * 10)) or "@acme.test" in key for key in sent)


async def test_a_corpus_costs_its_unique_valid_uncached_addresses_on_sqlite(
    redis_url: str, queue_prefix: str, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'credits.db'}"
    await migrate.upgrade(url)
    await _run_corpus(url, redis_url, queue_prefix, tmp_path)


@pytest.mark.postgres
async def test_a_corpus_costs_its_unique_valid_uncached_addresses_on_postgresql(
    database: str, redis_url: str, queue_prefix: str, tmp_path: Path
) -> None:
    await _run_corpus(database, redis_url, queue_prefix, tmp_path)
