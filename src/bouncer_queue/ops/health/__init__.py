"""Health: the rules that judge a snapshot (rules.py, no I/O) and the probe that takes one (probe.py).

`HealthProbe(runtime, started_at).report(live=..., record=...)` is what `bouncer-queue health`, the scheduled
health-check job and QueueManager.get_health_status call; `evaluate` and the dataclasses are importable from here.
"""

from __future__ import annotations

from bouncer_queue.ops.health.probe import PIPELINE_QUEUES, HealthProbe, report_without_runtime
from bouncer_queue.ops.health.rules import (
    Alert,
    HealthReport,
    HealthSnapshot,
    Status,
    Thresholds,
    evaluate,
    log_alerts,
    process_rss_mb,
)

__all__ = [
    "PIPELINE_QUEUES",
    "Alert",
    "HealthProbe",
    "HealthReport",
    "HealthSnapshot",
    "Status",
    "Thresholds",
    "evaluate",
    "log_alerts",
    "process_rss_mb",
    "report_without_runtime",
]
