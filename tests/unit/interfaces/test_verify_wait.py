"""verify's wait for its request ends on completion, on a signal, when its in-process workers fail, and when
Bouncer refuses the API key."""

from __future__ import annotations

import asyncio

import pytest

from bouncer_queue.errors import ConfigError, DatabaseUnavailable, Interrupted, QueueBackendError
from bouncer_queue.interfaces.runner import BackgroundWorkers, _until_done
from bouncer_queue.storage.records import RequestProgress


class Manager:
    def __init__(self, done: bool, refused: str | None = None) -> None:
        self.emails = {"completed": 2} if done else {"submitted": 2}
        self.refused = refused
        self.outage = 0

    async def api_key_refused(self) -> str | None:
        return self.refused

    async def request_progress(self, request_id: str) -> RequestProgress:
        if self.outage:
            self.outage -= 1
            raise DatabaseUnavailable("cannot read request progress: ConnectionRefusedError")
        return RequestProgress(request_id, 2, self.emails, 1, {"queued": 1})


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
