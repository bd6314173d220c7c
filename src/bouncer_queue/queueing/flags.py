"""Small shared flags kept in Redis beside the queues: today, the credits gate.

After a 402 the gate closes and every worker process stops submitting new batches until the health check sees
credits again. It lives in Redis, not in the ledger, because it is a transient signal: if Redis loses it, the
next create call meets the 402 again and closes it again, at the cost of one refused (free) request.
"""

from __future__ import annotations

import redis.asyncio as aioredis


class RedisCreditsGate:
    """pipeline.context.CreditsGate on a Redis key under the queue prefix."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._key = f"{prefix}:credits-exhausted"

    async def is_closed(self) -> bool:
        return bool(await self._client.exists(self._key))

    async def close(self, reason: str) -> None:
        await self._client.set(self._key, reason[:500])

    async def open(self) -> None:
        await self._client.delete(self._key)

    async def reason(self) -> str | None:
        value = await self._client.get(self._key)
        return str(value) if value is not None else None
