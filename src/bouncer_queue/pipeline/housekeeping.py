"""The cleanup-tasks queue's jobs: cleanup-rate-limits prunes old rows, health-check records a health snapshot.

Both run from bullmq job schedulers, so exactly one of them fires per interval however many worker processes
run. The health check itself lives in the service layer (it reads Redis, the database and Bouncer); the job
only calls it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bouncer_queue.storage.ratelimit import RateLimiter
    from bouncer_queue.storage.repository import Repository

log = logging.getLogger(__name__)


@dataclass
class Housekeeping:
    """The two scheduled jobs, with what they need."""

    repo: Repository
    limiter: RateLimiter
    rate_limit_retention_seconds: float
    metrics_retention_days: float
    health_check: Callable[[], Awaitable[Any]]

    async def cleanup_rate_limits(self, data: Mapping[str, Any]) -> dict[str, int]:
        removed = await self.limiter.cleanup(self.rate_limit_retention_seconds)
        cutoff = datetime.now(UTC) - timedelta(days=self.metrics_retention_days)
        pruned = await self.repo.prune_health_metrics(cutoff)
        log.info(
            "cleanup: %d rate-limit rows, %d health metrics removed",
            removed,
            pruned,
            extra={"action": "cleanup", "rate_limit_rows": removed, "health_rows": pruned},
        )
        return {"rate_limit_rows": removed, "health_metrics": pruned}

    async def run_health_check(self, data: Mapping[str, Any]) -> None:
        await self.health_check()
