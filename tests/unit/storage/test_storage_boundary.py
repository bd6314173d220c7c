"""The storage boundary's verdicts on driver errors, and the transaction re-run after a deadlock."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy.exc import OperationalError

from bouncer_queue.errors import DatabaseUnavailable, StorageError
from bouncer_queue.storage import transactions
from bouncer_queue.storage.boundary import is_conflict, is_unreachable, translate_errors


class DriverError(Exception):
    def __init__(self, *args: object, sqlstate: str | None = None) -> None:
        super().__init__(*args)
        self.sqlstate = sqlstate


def wrapped(error: Exception) -> OperationalError:
    return OperationalError("SELECT 1", {}, error)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "refused"),
        wrapped(DriverError("the database system is shutting down", sqlstate="57P03")),
        wrapped(DriverError("connection does not exist", sqlstate="08003")),
        wrapped(DriverError(2013, "Lost connection to server during query")),
        TimeoutError(),
    ],
)
async def test_a_database_that_does_not_answer_is_unavailable(error: Exception) -> None:
    assert is_unreachable(error)
    with pytest.raises(DatabaseUnavailable):
        async with translate_errors("sqlite://", "read"):
            raise error


@pytest.mark.parametrize(
    "error",
    [wrapped(DriverError("deadlock detected", sqlstate="40P01")), wrapped(DriverError(1213, "Deadlock found"))],
)
async def test_a_deadlock_is_a_conflict_and_not_an_outage(error: Exception) -> None:
    assert is_conflict(error) and not is_unreachable(error)
    with pytest.raises(StorageError) as raised:
        async with translate_errors("sqlite://", "write"):
            raise error
    assert not isinstance(raised.value, DatabaseUnavailable)


async def test_a_conflicting_transaction_runs_again_until_it_commits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transactions, "CONFLICT_BACKOFF_SECONDS", 0.0)
    runs = []

    async def transaction() -> str:
        runs.append(1)
        if len(runs) < 3:
            raise wrapped(DriverError("could not serialize access", sqlstate="40001"))
        return "committed"

    assert await transactions.run_again_on_conflict(transaction, "store results") == "committed"
    assert len(runs) == 3


async def test_conflicts_stop_being_retried_after_the_last_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transactions, "CONFLICT_BACKOFF_SECONDS", 0.0)
    runs = []

    async def transaction() -> None:
        runs.append(1)
        raise wrapped(DriverError("deadlock detected", sqlstate="40P01"))

    with pytest.raises(OperationalError):
        await transactions.run_again_on_conflict(transaction, "store results")
    assert len(runs) == transactions.CONFLICT_ATTEMPTS


async def test_other_errors_are_not_retried() -> None:
    runs = []

    async def transaction() -> None:
        runs.append(1)
        raise wrapped(DriverError("duplicate key", sqlstate="23505"))

    with pytest.raises(OperationalError):
        await transactions.run_again_on_conflict(transaction, "store results")
    assert len(runs) == 1


async def test_a_must_land_write_waits_for_the_database_to_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []

    async def no_sleep(seconds: float) -> None:
        pauses.append(seconds)

    # Only this module's asyncio: patched in the asyncio module itself, the sleeps of another thread's event loop
    # (a simulator a session-wide fixture left running) were counted too, and ran without pausing.
    monkeypatch.setattr(transactions, "asyncio", SimpleNamespace(sleep=no_sleep))
    runs = []

    async def record() -> str:
        runs.append(1)
        if len(runs) < 5:
            raise ConnectionRefusedError(111, "refused")
        return "recorded"

    assert await transactions.wait_for_database(record, "record a submitted batch") == "recorded"
    assert pauses == [0.5, 1.0, 2.0, 4.0]


async def test_a_must_land_write_gives_up_on_other_errors_at_once() -> None:
    runs = []

    async def record() -> None:
        runs.append(1)
        raise wrapped(DriverError("value too long", sqlstate="22001"))

    with pytest.raises(OperationalError):
        await transactions.wait_for_database(record, "record a submitted batch")
    assert len(runs) == 1
