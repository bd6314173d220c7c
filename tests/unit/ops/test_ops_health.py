"""Health evaluation: status rules, each alert at, just below and just above its threshold, report and logging."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from bouncer_queue.config import Settings
from bouncer_queue.ops.health import HealthSnapshot, Thresholds, evaluate, log_alerts, process_rss_mb

THRESHOLDS = Thresholds()


def snapshot(**changes: Any) -> HealthSnapshot:
    """A healthy snapshot, with `changes` applied."""
    base = HealthSnapshot(
        redis_ok=True,
        database_ok=True,
        bouncer_ok=True,
        redis_latency_ms=0.8,
        database_latency_ms=2.5,
        credits_left=50_000,
        rate_limit_utilization={"default": 0.5, "create": 0.2},
        process_rss_mb=180.0,
        redis_used_memory_mb=40.0,
        redis_maxmemory_mb=512.0,
        uptime_seconds=3_600.0,
        batches_in_flight=3,
        max_batches=15,
        backlog=120,
        failed_jobs=2,
        oldest_waiting_age_seconds=4.0,
    )
    return dataclasses.replace(base, **changes)


def alert_names(snap: HealthSnapshot, thresholds: Thresholds = THRESHOLDS) -> list[str]:
    return [a.name for a in evaluate(snap, thresholds).alerts]


def test_all_green_is_healthy():
    report = evaluate(snapshot(), THRESHOLDS)

    assert (report.status, report.alerts, report.problems) == ("healthy", [], [])
    assert report.ok


class TestStatusRules:
    @pytest.mark.parametrize("down", [{"redis_ok": False}, {"database_ok": False}])
    def test_redis_or_database_down_is_unhealthy(self, down: dict[str, bool]):
        assert evaluate(snapshot(**down), THRESHOLDS).status == "unhealthy"

    def test_unhealthy_wins_over_degraded(self):
        report = evaluate(snapshot(redis_ok=False, bouncer_ok=False, backlog=5_000), THRESHOLDS)

        assert report.status == "unhealthy"
        assert len(report.problems) == 2
        assert alert_names(report.snapshot) == ["backlog"]

    @pytest.mark.parametrize(
        "change",
        [{"bouncer_ok": False}, {"credits_exhausted": True, "credits_left": 0}, {"failed_jobs": 51}],
    )
    def test_bouncer_down_credits_exhausted_or_an_alert_is_degraded(self, change: dict[str, Any]):
        assert evaluate(snapshot(**change), THRESHOLDS).status == "degraded"

    def test_problems_carry_the_component_error(self):
        report = evaluate(snapshot(database_ok=False, errors={"database": "connection refused"}), THRESHOLDS)

        assert report.problems == ["the database is unreachable: connection refused"]

    def test_credits_exhausted_is_a_problem_not_an_alert(self):
        report = evaluate(snapshot(credits_exhausted=True, credits_left=0), THRESHOLDS)

        assert report.problems == ["Bouncer credits are exhausted"]
        assert report.alerts == []

    def test_a_refused_api_key_is_unhealthy_until_the_key_changes(self):
        report = evaluate(snapshot(api_key_refused="401: user not found"), THRESHOLDS)

        assert report.status == "unhealthy"
        assert report.problems == ["Bouncer refused the API key (401: user not found); submissions wait for a new key"]


class TestThresholds:
    """Every alert fires strictly above its limit: not at it, not just below it."""

    @pytest.mark.parametrize(
        ("field", "name", "below", "at", "above"),
        [
            ("backlog", "backlog", 999, 1_000, 1_001),
            ("failed_jobs", "failed_jobs", 49, 50, 51),
            ("process_rss_mb", "memory", 1_023.9, 1_024.0, 1_024.1),
        ],
    )
    def test_scalar_alerts(self, field: str, name: str, below: float, at: float, above: float):
        assert name not in alert_names(snapshot(**{field: below}))
        assert name not in alert_names(snapshot(**{field: at}))
        assert name in alert_names(snapshot(**{field: above}))

    @pytest.mark.parametrize(("value", "fires"), [(0.89, False), (0.9, False), (0.91, True)])
    def test_rate_limit_utilization_per_budget(self, value: float, fires: bool):
        names = alert_names(snapshot(rate_limit_utilization={"create": value, "default": 0.1}))

        assert names == (["rate_limit_utilization.create"] if fires else [])

    @pytest.mark.parametrize(("used", "fires"), [(460.0, False), (460.8, False), (461.0, True)])
    def test_redis_memory_against_maxmemory(self, used: float, fires: bool):
        assert ("redis_memory" in alert_names(snapshot(redis_used_memory_mb=used, redis_maxmemory_mb=512.0))) is fires

    def test_redis_without_maxmemory_never_alerts(self):
        assert alert_names(snapshot(redis_used_memory_mb=100_000.0, redis_maxmemory_mb=0.0)) == []

    def test_unmeasured_values_raise_no_alert(self):
        assert alert_names(snapshot(process_rss_mb=None, redis_used_memory_mb=None)) == []

    def test_alert_carries_value_threshold_and_message(self):
        (alert,) = evaluate(snapshot(backlog=1_500), THRESHOLDS).alerts

        assert (alert.value, alert.threshold) == (1_500, 1_000)
        assert "1500" in alert.message and "1000" in alert.message

    def test_custom_thresholds_apply(self):
        assert alert_names(snapshot(backlog=150), Thresholds(backlog=100)) == ["backlog"]

    def test_from_settings_reads_the_alert_settings(self):
        settings = Settings(
            alert_backlog=10, alert_failed_jobs=5, alert_rate_limit_utilization=0.5, alert_memory_mb=256
        )

        thresholds = Thresholds.from_settings(settings)

        assert (thresholds.backlog, thresholds.failed_jobs) == (10, 5)
        assert (thresholds.rate_limit_utilization, thresholds.memory_mb) == (0.5, 256)

    def test_defaults_match_the_seed_thresholds(self):
        assert Thresholds.from_settings(Settings()) == Thresholds()


def test_to_dict_is_json_ready():
    report = evaluate(snapshot(bouncer_ok=False, backlog=2_000, errors={"bouncer": "timeout"}), THRESHOLDS)

    document = json.loads(json.dumps(report.to_dict()))

    assert document["status"] == "degraded"
    assert document["alerts"][0]["name"] == "backlog"
    assert document["problems"] == ["the Bouncer API is unreachable: timeout"]
    snap = document["snapshot"]
    assert (snap["bouncer_ok"], snap["credits_left"], snap["backlog"]) == (False, 50_000, 2_000)
    assert snap["rate_limit_utilization"] == {"default": 0.5, "create": 0.2}
    assert snap["errors"] == {"bouncer": "timeout"}
    assert set(snap) == {f.name for f in dataclasses.fields(HealthSnapshot)}


def test_log_alerts_logs_one_warning_per_alert(caplog: pytest.LogCaptureFixture):
    report = evaluate(snapshot(backlog=1_001, failed_jobs=60), THRESHOLDS)
    logger = logging.getLogger("bouncer_queue.ops.test")

    with caplog.at_level(logging.WARNING, logger="bouncer_queue.ops.test"):
        log_alerts(report, logger)

    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    assert [(r.action, r.alert) for r in caplog.records] == [("alert", "backlog"), ("alert", "failed_jobs")]  # type: ignore[attr-defined]
    assert caplog.records[1].value == 60  # type: ignore[attr-defined]
    assert caplog.records[1].threshold == 50  # type: ignore[attr-defined]


class TestProcessRss:
    def test_reads_vmrss_in_mib(self, tmp_path: Path):
        status = tmp_path / "status"
        status.write_text("Name:\tpython\nVmPeak:\t 999999 kB\nVmRSS:\t  204800 kB\n")

        assert process_rss_mb(status) == 200.0

    def test_missing_file_gives_none(self, tmp_path: Path):
        assert process_rss_mb(tmp_path / "absent") is None

    def test_this_process_has_a_plausible_size(self):
        if not Path("/proc/self/status").exists():
            pytest.skip("no /proc on this system")
        rss = process_rss_mb()
        assert rss is not None and 1 < rss < 100_000


@pytest.mark.parametrize(
    ("workers_alive", "pipeline_jobs", "status"),
    [(0, 3, "unhealthy"), (0, 0, "healthy"), (1, 3, "healthy"), (None, 3, "healthy")],
)
def test_work_waiting_with_no_live_worker_is_unhealthy(
    workers_alive: int | None, pipeline_jobs: int, status: str
) -> None:
    report = evaluate(snapshot(workers_alive=workers_alive, pipeline_jobs=pipeline_jobs), THRESHOLDS)
    assert report.status == status
    if status == "unhealthy":
        assert report.problems == ["no workers process is alive while 3 jobs wait; start `bouncer-queue workers`"]
