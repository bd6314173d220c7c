"""asyncio helpers shared by the commands, the workers and the simulator."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel `tasks` and wait until every one has ended. A task left to end on its own may be inside a call (a
    database call: on SQLite its connection's thread would answer after the event loop had closed, and the
    connection would go back to an engine already disposed). What a cancelled task raised is dropped: its work
    was abandoned."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
