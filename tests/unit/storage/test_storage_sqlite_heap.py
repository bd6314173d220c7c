"""verify's cap on SQLite's heap: set process-wide through any connection, and nothing on other engines."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from bouncer_queue.storage.db import limit_sqlite_heap, make_engine


async def test_the_soft_heap_limit_is_set_for_the_process(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'heap.db'}")
    try:
        await limit_sqlite_heap(engine, 8 * 1024 * 1024)
        async with engine.connect() as conn:
            assert await conn.scalar(text("PRAGMA soft_heap_limit")) == 8 * 1024 * 1024
    finally:
        async with engine.connect() as conn:  # the limit is process-wide: give the test process its default back
            await conn.exec_driver_sql("PRAGMA soft_heap_limit=0")
        await engine.dispose()


async def test_other_engines_are_left_alone() -> None:
    engine = make_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")  # never connected to
    await limit_sqlite_heap(engine, 1)
    await engine.dispose()
