"""Worker heartbeats in Redis: each workers process says often who it is and that it lives.

Each process renews one expiring key, `{prefix}:bouncer-queue:worker:<host>:<pid>`, holding a JSON `WorkerInfo`
(host, pid, queues, version, start time, last beat), and adds its id to the set `{prefix}:bouncer-queue:workers`
so readers find the keys without SCAN. A process that dies stops renewing: its key expires after
HEARTBEAT_TTL_SECONDS, and `live_workers` drops the dangling id. The prefix's `{...}` hash tag keeps both keys in
the queues' Redis Cluster slot. `health`, `workers list` and the listener's /livez read what is written here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from bouncer_queue.ops.periodic import every
from bouncer_queue.queueing.connection import RedisClient

log = logging.getLogger(__name__)


def _index_key(prefix: str) -> str:
    return f"{prefix}:bouncer-queue:workers"


def _worker_key(prefix: str, worker_id: str) -> str:
    return f"{prefix}:bouncer-queue:worker:{worker_id}"


@dataclass(frozen=True)
class WorkerInfo:
    """One workers process as its heartbeat describes it; times are Unix seconds."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    version: str
    started_at: float
    last_beat: float

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["queues"] = list(self.queues)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> WorkerInfo:
        data: dict[str, Any] = json.loads(text)
        data["queues"] = tuple(data.get("queues", ()))
        return cls(**data)


class Heartbeat:
    """Writes one process's heartbeat; `last_success` (monotonic seconds) tells /livez whether it is fresh."""

    def __init__(
        self,
        client: RedisClient,
        prefix: str,
        info: WorkerInfo,
        ttl_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._info = info
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._clock = clock
        self.last_success: float | None = None

    @property
    def ttl_seconds(self) -> float:
        return self._ttl_ms / 1000

    async def beat(self) -> None:
        """Renew the key (and the index entry); Redis errors pass through."""
        self._info = replace(self._info, last_beat=self._clock())
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(_worker_key(self._prefix, self._info.id), self._info.to_json(), px=self._ttl_ms)
            pipe.sadd(_index_key(self._prefix), self._info.id)
            await pipe.execute()
        self.last_success = time.monotonic()

    def age_seconds(self) -> float | None:
        """Seconds since the last successful beat; None before the first."""
        return None if self.last_success is None else time.monotonic() - self.last_success

    async def remove(self) -> None:
        """Withdraw this process's heartbeat (on a clean stop), so it leaves `workers list` at once."""
        await self._client.delete(_worker_key(self._prefix, self._info.id))
        await self._client.srem(_index_key(self._prefix), self._info.id)


async def live_workers(client: RedisClient, prefix: str) -> list[WorkerInfo]:
    """The workers processes whose heartbeat has not expired, oldest first; expired ids are pruned."""
    ids = sorted(_text(member) for member in await client.smembers(_index_key(prefix)))
    if not ids:
        return []
    values = await client.mget([_worker_key(prefix, i) for i in ids])
    gone = [i for i, v in zip(ids, values, strict=True) if v is None]
    if gone:
        await client.srem(_index_key(prefix), *gone)
    found = [WorkerInfo.from_json(_text(v)) for v in values if v is not None]
    return sorted(found, key=lambda w: (w.started_at, w.id))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def make_info(worker_id: str, host: str, pid: int, queues: Sequence[str], version: str) -> WorkerInfo:
    now = time.time()
    return WorkerInfo(worker_id, host, pid, tuple(queues), version, started_at=now, last_beat=now)


@contextlib.asynccontextmanager
async def beating(heartbeat: Heartbeat, every_seconds: float) -> AsyncIterator[Heartbeat]:
    """Beat now (a Redis error here fails the start), then every `every_seconds`; withdraw on exit.

    The loop is `every()`'s, which ends with the block even when a beat awaiting Redis loses its cancellation."""
    await heartbeat.beat()

    async def beat() -> None:
        try:
            await heartbeat.beat()
        except Exception as exc:  # Redis away: /livez turns red when the beat grows stale, and we try again
            log.warning("heartbeat failed: %s", exc, extra={"action": "heartbeat_failed"})

    try:
        async with every(every_seconds, beat, "heartbeat", first_after=True):
            yield heartbeat
    finally:
        with contextlib.suppress(Exception):
            await heartbeat.remove()
