"""on_stop: turn SIGINT/SIGTERM into a graceful stop, and a second signal into a forced one.

Modelled on procrastinate's signals.py. Handlers go through `loop.add_signal_handler`, so they run in the event
loop (a callback may set an event or schedule a task) rather than interrupting whatever frame is running, and the
previous handlers are put back on exit so embedding applications and tests keep theirs. Stopping only calls the
callback: the caller decides what stopping means (usually `WorkerPool.close(grace)`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
RELOAD_SIGNAL = signal.SIGHUP


class _Stopper:
    """Counts stop signals: the first calls `graceful`, the next ones `force` (or raise SystemExit)."""

    def __init__(self, graceful: Callable[[], Any], force: Callable[[], Any] | None) -> None:
        self._graceful = graceful
        self._force = force
        self.received = 0

    def __call__(self, signum: int) -> None:
        self.received += 1
        name = signal.Signals(signum).name
        if self.received == 1:
            logger.info("%s received; stopping gracefully (send again to force)", name, extra={"action": "stopping"})
            self._graceful()
            return
        logger.warning("%s received again; stopping now", name, extra={"action": "force_stopping"})
        if self._force is None:
            raise SystemExit(128 + signum)
        self._force()


@contextmanager
def on_stop(
    callback: Callable[[], Any],
    *,
    force: Callable[[], Any] | None = None,
    install: bool = True,
    loop: asyncio.AbstractEventLoop | None = None,
) -> Iterator[Callable[[int], None]]:
    """Within the block, SIGINT/SIGTERM call `callback`, and a second one `force` (SystemExit when None).

    Yields the handler itself, so tests (and `install=False` embeddings) can deliver a "signal" by calling it.
    Must be entered inside a running event loop when `install` is true.
    """
    stopper = _Stopper(callback, force)

    def handle(signum: int) -> None:
        stopper(signum)

    if not install:
        yield handle
        return
    loop = loop or asyncio.get_running_loop()
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, handle, signum)
    try:
        yield handle
    finally:
        for signum, old in previous.items():
            loop.remove_signal_handler(signum)
            # remove_signal_handler resets to SIG_DFL (or the default SIGINT handler); put back what was there.
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


@contextmanager
def on_reload(callback: Callable[[], Any], *, loop: asyncio.AbstractEventLoop | None = None) -> Iterator[None]:
    """Within the block, SIGHUP calls `callback` (reload configuration; the process keeps running)."""
    loop = loop or asyncio.get_running_loop()
    previous = signal.getsignal(RELOAD_SIGNAL)
    loop.add_signal_handler(RELOAD_SIGNAL, callback)
    try:
        yield
    finally:
        loop.remove_signal_handler(RELOAD_SIGNAL)
        signal.signal(RELOAD_SIGNAL, previous if previous is not None else signal.SIG_DFL)
