"""The allocator knobs verify uses: harmless to call anywhere, and effective on glibc."""

from __future__ import annotations

import asyncio

from bouncer_queue.ops import malloc


def test_capping_arenas_is_taken_on_glibc_and_a_no_op_elsewhere() -> None:
    # Eight is glibc's own default for one core: this changes nothing for the test process.
    assert malloc.cap_arenas(8) == (malloc._glibc() is not None)


async def test_trimming_runs_until_cancelled() -> None:
    malloc.trim()
    trimmer = asyncio.create_task(malloc.trim_every(0.01))
    await asyncio.sleep(0.05)
    assert not trimmer.done()
    trimmer.cancel()
