"""read_ahead: the items of a sync or async source in order, one fetched ahead while the consumer works, errors
where their item would be, and a consumer that stops early leaves no fetch running."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing

import pytest

from bouncer_queue.storage.read_ahead import in_turn, read_ahead


def _numbers(count: int, log: list[str], fail_at: int | None = None) -> Iterator[int]:
    for n in range(count):
        if n == fail_at:
            raise ValueError(f"broken at {n}")
        log.append(f"read {n}")
        yield n


async def _consume(source: object, log: list[str], *, last: object = None) -> list[int]:
    """Each item "stored" only once the next one was read (except `last`): what read_ahead promises."""
    got = []
    async with aclosing(read_ahead(source)) as items:  # type: ignore[arg-type]
        async for item in items:
            if item != last:
                await _until(f"read {item + 1}", log)
            log.append(f"stored {item}")
            got.append(item)
    return got


async def _until(entry: str, log: list[str]) -> None:
    for _ in range(5_000):  # a generous bound, not a timing assertion: the read runs while this waits
        if entry in log:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{entry!r} never came: nothing was read ahead ({log})")


async def test_a_sync_source_is_read_one_item_ahead_in_a_thread() -> None:
    log: list[str] = []
    threads: set[str] = set()

    def source() -> Iterator[int]:
        for n in _numbers(4, log):
            threads.add(threading.current_thread().name)
            yield n

    assert await _consume(source(), log, last=3) == [0, 1, 2, 3]
    assert log == ["read 0", "read 1", "stored 0", "read 2", "stored 1", "read 3", "stored 2", "stored 3"]
    assert threading.current_thread().name not in threads


async def test_an_async_source_is_read_one_item_ahead() -> None:
    log: list[str] = []

    async def source() -> AsyncIterator[int]:
        for n in _numbers(3, log):
            yield n

    assert await _consume(source(), log, last=2) == [0, 1, 2]
    assert log == ["read 0", "read 1", "stored 0", "read 2", "stored 1", "stored 2"]


async def test_an_error_comes_out_after_the_items_before_it() -> None:
    log: list[str] = []
    got = []

    with pytest.raises(ValueError, match="broken at 2"):
        async with aclosing(read_ahead(_numbers(5, log, fail_at=2))) as items:
            async for item in items:
                got.append(item)

    assert got == [0, 1]


async def test_a_consumer_stopping_early_waits_for_the_read_under_way() -> None:
    started, release = threading.Event(), threading.Event()
    finished: list[int] = []

    def slow() -> Iterator[int]:
        yield 0
        started.set()
        release.wait(5)
        finished.append(1)
        yield 1

    items = read_ahead(slow())
    async with aclosing(items):
        assert await anext(items) == 0
        await asyncio.to_thread(started.wait, 5)
        asyncio.get_running_loop().call_later(0.05, release.set)
    assert finished == [1]  # the close waited for the thread's read


async def test_a_list_is_just_iterated() -> None:
    got = [item async for item in read_ahead([[1], [2]])]

    assert got == [[1], [2]]


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_in_turn_reads_an_item_only_when_it_is_asked_for(asynchronous: bool) -> None:
    log: list[str] = []

    async def numbers() -> AsyncIterator[int]:
        for n in _numbers(3, log):
            yield n

    async with aclosing(in_turn(numbers() if asynchronous else _numbers(3, log))) as items:
        async for item in items:
            log.append(f"stored {item}")

    assert log == ["read 0", "stored 0", "read 1", "stored 1", "read 2", "stored 2"]
