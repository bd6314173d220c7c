"""Where the queues live: an external Redis/Valkey from the settings, or the embedded Valkey.

`open_redis_target(settings)` yields a `RedisTarget`: the keyword arguments bullmq builds its own clients from, and a
way to open a plain redis.asyncio client for stats and pings. Two bullmq pitfalls are handled here once:

- redis-py 8 defaults to a 5 s socket timeout, shorter than the worker's blocking BZPOPMIN (up to 10 s); the timeout
  is swallowed by bullmq's retry and workers stall silently (pitfall 1). Every target carries socket_timeout >= 15 s
  (or None on the local socket).
- a shared client without decode_responses=True shows jobs as name None, data {} (pitfall 5); `open_client` sets it.

With REDIS_CLUSTER=true the URL names one node of a Redis Cluster: bullmq then gets a fresh `RedisCluster` client
per queue or worker (it closes it), and every key of ours shares the QUEUE_PREFIX hash tag, so one slot.

Passwords never leave this module in text: targets print as a masked URL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import RedisError

from bouncer_queue.config import Settings
from bouncer_queue.errors import QueueBackendError
from bouncer_queue.queueing.embedded import EmbeddedValkey

logger = logging.getLogger(__name__)

#: Longer than bullmq's longest blocking wait (10 s), so a blocked read never looks like a dead socket.
MIN_SOCKET_TIMEOUT_SECONDS = 15.0
DEFAULT_SOCKET_TIMEOUT_SECONDS = 30.0
#: bullmq's RedisConnection sets these itself; passing them again is a TypeError.
_SET_BY_BULLMQ = frozenset({"decode_responses", "retry", "retry_on_error", "single_connection_client"})
#: The redis-py options a RedisCluster client takes from a node's URL (a cluster has no `db` but 0).
_CLUSTER_OPTIONS = frozenset(
    {"host", "port", "username", "password", "ssl", "socket_timeout", "socket_connect_timeout"}
)

#: A client of a single Redis or of a Redis Cluster; both speak the commands we use.
RedisClient = aioredis.Redis | RedisCluster


@dataclass(frozen=True)
class RedisTarget:
    """One Redis to talk to: `options` are redis-py keyword arguments, `display` a printable, password-free name;
    `cluster` says the options name one node of a Redis Cluster."""

    options: Mapping[str, Any] = field(repr=False)
    display: str
    cluster: bool = False

    def bullmq_connection(self) -> dict[str, Any] | RedisCluster:
        """The value for bullmq's `{"connection": ...}`: a fresh dict, so bullmq builds its own clients; for a
        cluster, a fresh RedisCluster client, which bullmq closes with its queue or worker."""
        if self.cluster:
            return self._cluster_client()
        return dict(self.options)

    def open_client(self) -> RedisClient:
        """A redis.asyncio client on this target (decode_responses=True). The caller closes it with `aclose()`."""
        if self.cluster:
            return self._cluster_client()
        return aioredis.Redis(**self.options, decode_responses=True)

    def _cluster_client(self) -> RedisCluster:
        options = {key: value for key, value in self.options.items() if key in _CLUSTER_OPTIONS}
        return RedisCluster(**options, decode_responses=True)

    def __str__(self) -> str:
        return self.display


#: What the bullmq adapters accept as `connection`: a target, or redis-py keyword arguments.
Connection = RedisTarget | Mapping[str, Any]


def as_bullmq_connection(connection: Connection) -> dict[str, Any] | RedisCluster:
    """A fresh value for bullmq's `connection` (keyword arguments, or a cluster client), which bullmq closes."""
    if isinstance(connection, RedisTarget):
        return connection.bullmq_connection()
    return dict(connection)


def _socket_timeout(value: float | None) -> float | None:
    if value is None:
        return None
    return max(float(value), MIN_SOCKET_TIMEOUT_SECONDS)


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***; safe for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def options_from_url(url: str) -> dict[str, Any]:
    """redis-py keyword arguments for a redis://, rediss:// (TLS) or unix:// URL, with a safe socket timeout."""
    options: dict[str, Any] = dict(parse_url(url))
    connection_class = options.pop("connection_class", None)
    if connection_class is SSLConnection:
        options["ssl"] = True
    elif connection_class is UnixDomainSocketConnection:
        options["unix_socket_path"] = options.pop("path")
    for key in _SET_BY_BULLMQ:
        options.pop(key, None)
    options["socket_timeout"] = _socket_timeout(options.get("socket_timeout", DEFAULT_SOCKET_TIMEOUT_SECONDS))
    return options


def target_from_url(url: str, *, cluster: bool = False) -> RedisTarget:
    """A target for an external Redis/Valkey given by URL (one node's URL for a cluster)."""
    return RedisTarget(options=options_from_url(url), display=mask_url(url), cluster=cluster)


def target_for_embedded(server: EmbeddedValkey) -> RedisTarget:
    """A target for a running embedded Valkey."""
    return RedisTarget(options=server.connection_options(), display=f"embedded valkey at unix:{server.socket_path}")


async def ping(client: RedisClient) -> float:
    """PING through `client`; return the round trip in seconds. Redis errors pass through unchanged."""
    started = time.perf_counter()
    await client.ping()
    return time.perf_counter() - started


def _scrub(text: str, target: RedisTarget) -> str:
    password = target.options.get("password")
    return text.replace(str(password), "***") if password else text


async def check_reachable(target: RedisTarget) -> float:
    """PING the target once; QueueBackendError (password masked) when it cannot be reached. Returns the latency."""
    client = target.open_client()
    try:
        return await ping(client)
    except (RedisError, OSError) as err:
        reason = _scrub(f"{type(err).__name__}: {err}", target)
        raise QueueBackendError(f"Redis is not reachable at {target.display} ({reason})") from None
    finally:
        await client.aclose()


@asynccontextmanager
async def open_redis_target(settings: Settings) -> AsyncIterator[RedisTarget]:
    """Yield the configured Redis (checked with a PING), or start the embedded Valkey and stop it on exit."""
    url = settings.external_redis_url()
    if url is not None:
        target = target_from_url(url, cluster=settings.redis_cluster)
        await check_reachable(target)
        logger.info("using redis", extra={"action": "redis_selected", "redis": target.display})
        yield target
        return
    # Started from the event loop's thread on purpose: PDEATHSIG is tied to the thread that forks.
    with EmbeddedValkey(settings.state_dir) as server:
        target = target_for_embedded(server)
        await check_reachable(target)
        yield target
