"""verify's wait for its request ends on completion, on a signal, when its in-process workers fail, and when
Bouncer refuses the API key."""

from __future__ import annotations

import asyncio

import pytest

from bouncer_queue.errors import ConfigError, DatabaseUnavailable, Interrupted, QueueBackendError
from bouncer_queue.interfaces.runner import BackgroundWorkers, _until_done, wait_for_request
from bouncer_queue.storage.records import BatchProgress, RequestProgress


class Manager:
    def __init__(self, done: bool, refused: str | None = None) -> None:
        self.emails = {"completed": 2} if done else {"submitted": 2}
        self.batches = {"downloaded": 1} if done else {"queued": 1}
        self.refused = refused
        self.outage = 0
        self.counts = 0

    async def api_key_refused(self) -> str | None:
        return self.refused

    async def request_progress(self, request_id: str) -> RequestProgress:
        if self.outage:
            self.outage -= 1
            raise DatabaseUnavailable("cannot read request progress: ConnectionRefusedError")
        self.counts += 1
        return RequestProgress(request_id, 2, self.emails, 1, self.batches)

    async def batch_progress(self, request_id: str) -> BatchProgress:
        return BatchProgress(self.batches, 0 if "downloaded" in self.batches else 2)


async def idle() -> None:
    await asyncio.sleep(3600)


async def broken() -> None:
    raise QueueBackendError("the worker of batch-download stopped unexpectedly")


def workers(body: object) -> BackgroundWorkers:
    return BackgroundWorkers(asyncio.Event(), asyncio.create_task(body))  # type: ignore[arg-type]


async def test_it_returns_when_the_request_is_done() -> None:
    running = workers(idle())
    await asyncio.wait_for(_until_done(Manager(True), "r", running), 5)  # type: ignore[arg-type]
    running.task.cancel()


async def test_a_failure_of_the_workers_ends_the_wait_with_their_error() -> None:
    with pytest.raises(QueueBackendError, match="stopped unexpectedly"):
        await asyncio.wait_for(_until_done(Manager(False), "r", workers(broken())), 5)  # type: ignore[arg-type]


async def test_a_signal_ends_the_wait_as_an_interrupt() -> None:
    running = workers(idle())
    running.stop.set()
    with pytest.raises(Interrupted):
        await asyncio.wait_for(_until_done(Manager(False), "r", running), 5)  # type: ignore[arg-type]
    running.task.cancel()


async def test_a_refused_key_ends_the_wait_with_a_clear_error() -> None:
    running = workers(idle())
    manager = Manager(False, refused="401 user not found")
    with pytest.raises(ConfigError, match=r"refused the API key \(401 user not found\).*resumes request r"):
        await asyncio.wait_for(_until_done(manager, "r", running), 5)  # type: ignore[arg-type]
    running.task.cancel()


async def test_a_database_outage_is_waited_out() -> None:
    running = workers(idle())
    manager = Manager(True)
    manager.outage = 2
    await asyncio.wait_for(_until_done(manager, "r", running), 10)  # type: ignore[arg-type]
    assert manager.outage == 0
    running.task.cancel()


async def test_addresses_are_counted_once_more_when_the_last_batch_closes_not_on_every_look() -> None:
    manager = Manager(False)
    waiting = asyncio.create_task(wait_for_request(manager, "r", interval=0.01))  # type: ignore[arg-type]
    await asyncio.sleep(0.2)  # about twenty looks at the batches while one is open
    assert manager.counts == 1 and not waiting.done()
    manager.emails, manager.batches = {"completed": 2}, {"downloaded": 1}
    progress = await asyncio.wait_for(waiting, 5)
    assert progress.done and manager.counts == 2


async def test_closed_batches_are_not_taken_for_a_finished_request_until_the_count_says_so() -> None:
    manager = Manager(False)
    manager.batches = {"downloaded": 1}  # every batch closed, one address still without its outcome
    manager.emails = {"completed": 1, "submitted": 1}
    waiting = asyncio.create_task(wait_for_request(manager, "r", interval=0.01))  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    assert not waiting.done()
    manager.emails = {"completed": 2}
    assert (await asyncio.wait_for(waiting, 5)).done


def test_verify_takes_one_download_and_a_few_creates_at_a_time_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    from bouncer_queue.config import Settings
    from bouncer_queue.interfaces.runner import VERIFY_CREATE_CONCURRENCY, VERIFY_DOWNLOAD_CONCURRENCY, verify_settings

    monkeypatch.delenv("BATCH_DOWNLOAD_CONCURRENCY", raising=False)
    monkeypatch.delenv("EMAIL_VERIFICATION_CONCURRENCY", raising=False)
    chosen = verify_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    assert chosen.batch_download_concurrency == VERIFY_DOWNLOAD_CONCURRENCY
    assert chosen.email_verification_concurrency <= VERIFY_CREATE_CONCURRENCY
    monkeypatch.setenv("BATCH_DOWNLOAD_CONCURRENCY", "4")
    monkeypatch.setenv("EMAIL_VERIFICATION_CONCURRENCY", "12")
    told = verify_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    assert (told.batch_download_concurrency, told.email_verification_concurrency) == (4, 12)


class SlowReads(Manager):
    """A database call that is under way when the wait ends (on SQLite: a query in its connection's thread)."""

    def __init__(self) -> None:
        super().__init__(False)
        self.reading = asyncio.Event()
        self.ended = False

    async def request_progress(self, request_id: str) -> RequestProgress:
        self.reading.set()
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.01)  # the call winds down (a rollback, a connection given back) before it ends
            self.ended = True
        raise AssertionError("unreachable")


async def test_a_wait_that_ends_leaves_no_database_call_running() -> None:
    # Left running, the call would end after verify's event loop closed: an exception in SQLite's connection
    # thread, and a connection given back after its engine was disposed.
    manager = SlowReads()

    async def fail_while_reading() -> None:
        await manager.reading.wait()
        raise QueueBackendError("METRICS_PORT: 127.0.0.1:9100 is already in use")

    running = workers(fail_while_reading())
    with pytest.raises(QueueBackendError, match="already in use"):
        await asyncio.wait_for(_until_done(manager, "r", running), 5)  # type: ignore[arg-type]

    assert manager.ended
    assert asyncio.all_tasks() == {asyncio.current_task()}
