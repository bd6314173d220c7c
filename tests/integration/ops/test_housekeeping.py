"""The cleanup-rate-limits job prunes rate-limit rows past their retention and health metrics past theirs,
and keeps the recent ones (SQLite file; the same repository code runs on PostgreSQL)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bouncer_queue.pipeline.housekeeping import Housekeeping
from bouncer_queue.storage import migrate
from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.ratelimit import Budget, RateLimiter
from bouncer_queue.storage.records import HealthMetric
from bouncer_queue.storage.repository import Repository


async def _nothing() -> None:
    return None


async def test_cleanup_prunes_old_rate_limit_rows_and_health_metrics(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bouncer.db'}"
    await migrate.upgrade(url)
    engine = make_engine(url)
    try:
        budgets = {"batch": Budget(100, 60.0)}
        two_hours_ago = time.time() - 7_200
        old_limiter = RateLimiter(engine, budgets, clock=lambda: two_hours_ago)
        limiter = RateLimiter(engine, budgets)
        for _ in range(3):
            assert (await old_limiter.acquire(["batch"], "old")).allowed
        assert (await limiter.acquire(["batch"], "recent")).allowed
        repo = Repository(engine)
        now = datetime.now(UTC)
        for age in (timedelta(days=10), timedelta(days=8), timedelta(hours=1)):
            await repo.record_health_metric(HealthMetric("healthy", {}, recorded_at=now - age), {})
        housekeeping = Housekeeping(
            repo=repo,
            limiter=limiter,
            rate_limit_retention_seconds=3_600,
            metrics_retention_days=7,
            health_check=_nothing,
        )

        assert await housekeeping.cleanup_rate_limits({}) == {"rate_limit_rows": 3, "health_metrics": 2}
        assert await limiter.usage() == {"batch": (1, 100)}
        assert len(await repo.recent_health_metrics()) == 1
        assert await housekeeping.cleanup_rate_limits({}) == {"rate_limit_rows": 0, "health_metrics": 0}
    finally:
        await engine.dispose()
