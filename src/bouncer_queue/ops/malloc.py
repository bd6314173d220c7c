"""Keeping a one-process run's resident memory near what it actually holds: glibc's allocator, told to give back.

`verify` runs the whole job in one process: ingest, the workers, the export. glibc gives each thread that
allocates an arena of its own, up to eight per core, and every SQLite connection of aiosqlite is a thread, so
a busy minute of downloads leaves a dozen arenas. Memory freed in an arena stays in the process (RSS) until the
top of that arena is free, which fragmented arenas seldom are. Two knobs help, measured with `bench/e2e.py
--verify` (docs/benchmarks.md): cap the arenas before the threads start (M_ARENA_MAX), and now and then hand the
free pages of every arena back to the system (malloc_trim). Both do nothing where the C library is not glibc.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import sys
from functools import cache

#: mallopt's parameter number for the arena cap (glibc's malloc.h).
_M_ARENA_MAX = -8


@cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # Only glibc has gnu_get_libc_version (musl has no mallopt or malloc_trim either).
    return libc if hasattr(libc, "gnu_get_libc_version") else None


def cap_arenas(arenas: int) -> bool:
    """Let at most `arenas` malloc arenas exist from now on; True when the C library took it. Call early:
    arenas made before stay."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


def trim() -> None:
    """Return the free pages of every arena to the system (RSS falls; nothing in use moves)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


async def trim_every(seconds: float) -> None:
    """`trim` every `seconds` until cancelled: a run's peak is then what it holds, not what it once held."""
    while True:
        await asyncio.sleep(seconds)
        trim()
