"""Small shared flags kept in Redis beside the queues: the credits gate and the auth gate.

After a 402 the credits gate closes and every worker process stops submitting new batches until the health
check sees credits again. After a 401 or 403 the auth gate closes for the key Bouncer refused: submissions stop
(batches stay pending, nothing is dead-lettered) until the key in force is a different one, rotated through
the key file or SIGHUP; the gate stores a short hash of the refused key (never the key) to tell them apart.
They live in Redis, not in the ledger, because they are transient signals: if Redis loses one, the next call
meets the 402 or 401 again and closes it again, at the cost of one refused (free) request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bouncer_queue.queueing.connection import RedisClient

log = logging.getLogger(__name__)


class RedisGate:
    """pipeline.context.Gate on a Redis key: closed while the key exists, its value the reason."""

    def __init__(self, client: RedisClient, key: str) -> None:
        self._client = client
        self._key = key

    async def is_closed(self) -> bool:
        return bool(await self._client.exists(self._key))

    async def close(self, reason: str) -> None:
        await self._client.set(self._key, reason[:500])

    async def open(self) -> None:
        await self._client.delete(self._key)

    async def reason(self) -> str | None:
        value = await self._client.get(self._key)
        return str(value) if value is not None else None


class RedisCreditsGate(RedisGate):
    """Closed after a 402 until the health check sees credits again."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        super().__init__(client, f"{prefix}:credits-exhausted")


class RedisAuthGate(RedisGate):
    """Closed after a 401/403 for the refused key; `fingerprint()` names the key in force (see the module)."""

    def __init__(self, client: RedisClient, prefix: str, fingerprint: Callable[[], str | None]) -> None:
        super().__init__(client, f"{prefix}:key-refused")
        self._fingerprint = fingerprint

    async def close(self, reason: str) -> None:
        await self._client.set(self._key, f"{self._fingerprint() or ''}\n{reason[:500]}")

    async def is_closed(self) -> bool:
        value = await self._client.get(self._key)
        if value is None:
            return False
        refused = str(value).partition("\n")[0]
        if refused == (self._fingerprint() or ""):
            return True
        await self.open()
        log.warning("the API key changed; submissions resume", extra={"action": "auth_gate_opened"})
        return False

    async def reason(self) -> str | None:
        return str(value).partition("\n")[2] if (value := await self._client.get(self._key)) is not None else None
