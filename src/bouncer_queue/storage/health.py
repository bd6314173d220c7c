"""Health storage: the history of health checks in Bouncer_Health_Metrics, and a database round-trip probe.

Each health check records one row with its chartable numbers in real columns (HEALTH_NUMBER_COLUMNS), the
service reads the newest back, and housekeeping prunes the old ones.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import delete, insert, select, text

from bouncer_queue.storage.records import HealthMetric
from bouncer_queue.storage.tables import HEALTH_NUMBER_COLUMNS, HealthMetricModel, utcnow
from bouncer_queue.storage.transactions import Queries, new_id, translated


class HealthQueries(Queries):
    """Writes, reads and pruning of Bouncer_Health_Metrics, plus `ping`."""

    @translated("record a health metric")
    async def record_health_metric(self, metric: HealthMetric, numbers: Mapping[str, float | None]) -> int:
        unknown = set(numbers) - set(HEALTH_NUMBER_COLUMNS)
        if unknown:
            raise ValueError(f"unknown health metric columns: {sorted(unknown)}; valid: {HEALTH_NUMBER_COLUMNS}")
        query = insert(HealthMetricModel).values(
            recorded_at=metric.recorded_at or utcnow(),
            status=metric.status,
            alerts=list(metric.alerts),
            snapshot=dict(metric.snapshot),
            **numbers,
        )
        async with self._db.write() as conn:
            return new_id(await conn.execute(query))

    @translated("read health metrics")
    async def recent_health_metrics(self, limit: int = 20) -> list[HealthMetric]:
        table = HealthMetricModel
        query = select(table.__table__).order_by(table.recorded_at.desc(), table.id.desc()).limit(limit)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            HealthMetric(
                status=r.status,
                snapshot=r.snapshot,
                alerts=tuple(r.alerts or ()),
                recorded_at=r.recorded_at,
                id=r.id,
            )
            for r in rows
        ]

    @translated("read the recorded credits")
    async def latest_credits(self) -> tuple[int, datetime] | None:
        table = HealthMetricModel
        query = (
            select(table.credits_left, table.recorded_at)
            .where(table.credits_left.is_not(None))
            .order_by(table.recorded_at.desc(), table.id.desc())
            .limit(1)
        )
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else (int(row.credits_left), row.recorded_at)

    @translated("prune health metrics")
    async def prune_health_metrics(self, older_than: datetime) -> int:
        query = delete(HealthMetricModel).where(HealthMetricModel.recorded_at < older_than)
        async with self._db.write() as conn:
            return int((await conn.execute(query)).rowcount)

    @translated("ping")
    async def ping(self) -> float:
        # A bare connection, not a read transaction: the probe measures one round trip and nothing else.
        started = time.perf_counter()
        async with self._db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return time.perf_counter() - started
