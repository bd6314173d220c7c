"""The composition root: `open_runtime(settings)` builds every collaborator once and closes them in reverse.

Order of opening: Redis (the embedded Valkey when none is configured), the database (migrated first when it is
the embedded SQLite default), the Bouncer client, then the queue adapters. Closing runs the other way. The CLI,
the Python API (service.QueueManager) and the tests all enter here, so there is one place that wires things.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from bouncer_queue.bouncer import BouncerClient, make_bouncer_client
from bouncer_queue.bouncer.client import ApiKeyProvider
from bouncer_queue.config import Settings
from bouncer_queue.errors import ConfigError
from bouncer_queue.files import private_dir
from bouncer_queue.ops.metrics import Metrics
from bouncer_queue.pipeline.context import Policy, StageContext
from bouncer_queue.queueing.admin import QueueAdmin
from bouncer_queue.queueing.connection import RedisTarget, open_redis_target
from bouncer_queue.queueing.enqueue import BullmqEnqueuer
from bouncer_queue.queueing.flags import RedisAuthGate, RedisCreditsGate
from bouncer_queue.storage import revision
from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.ratelimit import RateLimiter, budgets_from_settings
from bouncer_queue.storage.repository import Repository

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything a running bouncer-queue holds open."""

    settings: Settings
    redis: RedisTarget
    engine: AsyncEngine
    repo: Repository
    limiter: RateLimiter
    bouncer: BouncerClient
    enqueuer: BullmqEnqueuer
    admin: QueueAdmin
    credits_gate: RedisCreditsGate
    auth_gate: RedisAuthGate
    metrics: Metrics
    ctx: StageContext
    #: Monitoring reads (health, progress, export, history): DATABASE_READ_URL's replica, else `repo` itself.
    read_repo: Repository


def worker_name() -> str:
    """host:pid, recorded with each rate-limit slot so the audit log shows who spent the budget."""
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


async def prepare_database(settings: Settings, auto_migrate: bool | None = None) -> None:
    """Migrate the embedded SQLite default (or any database when `auto_migrate`); otherwise insist that an
    explicit DATABASE_URL is already migrated: several workers racing to migrate a shared server is worse than
    a clear error."""
    url = settings.effective_database_url()
    if settings.database_url is None:
        private_dir(settings.state_dir)  # the default SQLite file holds every list: the folder is the owner's
    if await revision.current(url, ssl=settings.database_ssl) == revision.HEAD:
        return
    if auto_migrate or (auto_migrate is None and settings.database_url is None):
        from bouncer_queue.storage import migrate  # alembic loads only when there is something to migrate

        await migrate.upgrade(url, ssl=settings.database_ssl)
        return
    raise ConfigError("the database is not at the latest schema; run `bouncer-queue db upgrade` first")


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    bouncer_transport: httpx.AsyncBaseTransport | None = None,
    metrics: Metrics | None = None,
    api_key: ApiKeyProvider | None = None,
    auto_migrate: bool | None = None,
) -> AsyncIterator[Runtime]:
    """Open every collaborator; close them in reverse order on exit."""
    metrics = metrics or Metrics()
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(open_redis_target(settings))
        await prepare_database(settings, auto_migrate)
        engine = make_engine(
            settings.effective_database_url(), pool_size=settings.database_pool_size, ssl=settings.database_ssl
        )
        stack.push_async_callback(engine.dispose)
        repo = Repository(engine)
        read_repo = await stack.enter_async_context(_read_repository(settings, repo))
        limiter = RateLimiter(engine, budgets_from_settings(settings), worker=worker_name())
        bouncer = make_bouncer_client(
            settings, transport=bouncer_transport, on_response=metrics.bouncer_response, api_key=api_key
        )
        stack.push_async_callback(bouncer.aclose)
        enqueuer = BullmqEnqueuer(
            redis,
            settings.queue_prefix,
            attempts=settings.job_attempts,
            backoff_ms=settings.job_backoff_ms,
            keep_completed=settings.keep_completed_jobs,
            keep_failed=settings.keep_failed_jobs,
        )
        stack.push_async_callback(enqueuer.close)
        admin = QueueAdmin(redis, settings.queue_prefix)
        stack.push_async_callback(admin.close)
        flags_client = redis.open_client()
        stack.push_async_callback(flags_client.aclose)
        gate = RedisCreditsGate(flags_client, settings.queue_prefix)
        auth_gate = RedisAuthGate(flags_client, settings.queue_prefix, bouncer.key_fingerprint)
        ctx = StageContext(
            repo=repo,
            bouncer=bouncer,
            limiter=limiter,
            enqueuer=enqueuer,
            credits_gate=gate,
            policy=Policy.from_settings(settings),
            observer=metrics,
            auth_gate=auth_gate,
        )
        yield Runtime(
            settings, redis, engine, repo, limiter, bouncer, enqueuer, admin, gate, auth_gate, metrics, ctx, read_repo
        )


@asynccontextmanager
async def _read_repository(settings: Settings, primary: Repository) -> AsyncIterator[Repository]:
    """A repository on DATABASE_READ_URL when set (disposed on exit), else the primary one."""
    if settings.database_read_url is None:
        yield primary
        return
    engine = make_engine(settings.read_database_url(), pool_size=settings.database_pool_size, ssl=settings.database_ssl)
    try:
        yield Repository(engine)
    finally:
        await engine.dispose()
