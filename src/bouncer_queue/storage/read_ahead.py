"""Reading a list's next chunk while the current one is stored (ingest.py): the two overlap instead of adding up.

Storing a chunk mostly waits: for the PostgreSQL backend (another process) or for SQLite's B-tree work, which runs
without the GIL. Reading one (the CSV parse, the syntax pre-filter) is Python work. So the next chunk is read in a
worker thread (a sync source) or a task (an async one) while the current chunk's transaction runs, and a list is
stored at the pace of the slower of the two rather than of their sum: one chunk ahead, never more, so a `cancel`
still stops the read within a chunk. A source that is already in memory (a list or tuple) is just iterated.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_END: Any = object()


async def read_ahead(source: Iterable[T] | AsyncIterable[T]) -> AsyncGenerator[T, None]:
    """The items of `source`, each one fetched while the consumer works on the one before (errors included:
    one raised reading an item comes out where that item would). Close it (contextlib.aclosing) to wait for a
    fetch still running when the consumer stops early."""
    if isinstance(source, list | tuple):
        for item in source:
            yield item
        return
    fetch = _fetcher(source)
    pending = asyncio.ensure_future(fetch())
    try:
        while (item := await pending) is not _END:
            pending = asyncio.ensure_future(fetch())
            yield item
    finally:
        if not pending.done():
            # A thread cannot be interrupted: let the read under way end (one chunk at most), then drop it.
            await asyncio.wait([pending])
        if pending.done() and not pending.cancelled():
            pending.exception()  # retrieved: an error in a chunk nobody asked for is not reported as unhandled


async def in_turn(source: Iterable[T] | AsyncIterable[T]) -> AsyncGenerator[T, None]:
    """The items of `source`, each fetched only when asked for: read_ahead without the overlap, and without the
    item it holds in memory (`verify`, whose peak memory is its budget)."""
    if isinstance(source, AsyncIterable):
        async for item in source:
            yield item
    else:
        for item in source:
            yield item


def _fetcher(source: Iterable[T] | AsyncIterable[T]) -> Any:
    if isinstance(source, AsyncIterable):
        items: AsyncIterator[T] = aiter(source)
        return lambda: anext(items, _END)
    iterator: Iterator[T] = iter(source)
    return lambda: asyncio.to_thread(next, iterator, _END)
