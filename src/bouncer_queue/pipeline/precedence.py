"""Precedence: in one process, creates and polls go before the CPU-heavy part of downloads.

A freed batch slot earns nothing until its next create reaches Bouncer, while a download that waits a moment
delays nothing but its own results. In one process every stage shares one event loop, and decoding and storing
a 10,000-result download is a few hundred ms of CPU in chunks: a woken create, which needs a dozen database and
Redis round trips, would wait behind every chunk of every download in progress and reach Bouncer seconds late.
So a create holds `urgent()` while it runs, and so does a poll (one that finds its batch done frees the
slot); a download calls `after_urgent()` before each of its heavy steps and between chunks of decoding. It
waits only while some create or poll is under way in this process, and never longer than `MAX_WAIT_SECONDS`
at a time (a create call to a slow Bouncer must not hold every download). Other processes are unaffected:
each has its own event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

#: The longest one `after_urgent` waits: creates come and go within well under a second on our side.
MAX_WAIT_SECONDS = 2.0


class Precedence:
    """Urgent work (creates) in flight in this process, and a wait until there is none."""

    def __init__(self, max_wait_seconds: float = MAX_WAIT_SECONDS) -> None:
        self._max_wait = max_wait_seconds
        self._urgent = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @asynccontextmanager
    async def urgent(self) -> AsyncIterator[None]:
        """Hold back `after_urgent` callers while the block runs."""
        self._urgent += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._urgent -= 1
            if self._urgent == 0:
                self._idle.set()

    async def after_urgent(self) -> None:
        """Return once no urgent work is in flight (at once when there is none), or after the longest wait."""
        if self._urgent:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self._max_wait)
