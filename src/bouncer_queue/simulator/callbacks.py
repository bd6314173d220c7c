"""Batch callbacks of the simulator: POST each completed batch's final object to its `?callback=` URL.

`create_app` runs `callback_loop` as a lifespan task when served by uvicorn; tests call `deliver_callbacks`
directly with an httpx client of their own. Only loopback hosts are called, a few attempts each.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

import httpx

from bouncer_queue.simulator.state import SimulatorState

logger = logging.getLogger(__name__)

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_CALLBACK_TICK_SECONDS = 0.2


async def deliver_callbacks(state: SimulatorState, http: httpx.AsyncClient, *, attempts: int | None = None) -> int:
    """POST every due callback (loopback URLs only), retrying each a few times; return how many arrived."""
    delivered = 0
    for url, body in state.take_callbacks():
        if urlsplit(url).hostname not in _LOOPBACK:
            logger.warning("simulator callback to a non-loopback host dropped", extra={"action": "callback_dropped"})
            continue
        delivered += await _post_with_retries(http, url, body, attempts or state.config.callback_attempts)
    return delivered


async def _post_with_retries(http: httpx.AsyncClient, url: str, body: dict[str, Any], attempts: int) -> int:
    for attempt in range(attempts):
        try:
            response = await http.post(url, json=body)
            if response.is_success:
                return 1
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1 * (attempt + 1))
    return 0


async def callback_loop(state: SimulatorState, transport: httpx.AsyncBaseTransport | None) -> None:
    """Deliver due callbacks every tick, until cancelled."""
    async with httpx.AsyncClient(transport=transport, timeout=5.0) as http:
        while True:
            await asyncio.sleep(_CALLBACK_TICK_SECONDS)
            await deliver_callbacks(state, http)
