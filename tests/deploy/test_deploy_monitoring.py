"""deploy/prometheus and deploy/grafana: the alert rules pass `promtool check rules` and their own unit tests
(`promtool test rules`: each threshold at and just above), and every series the rules and the dashboard query is
one the workers really export (read from a `Metrics` registry with every metric set)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bouncer_queue.ops.metrics import Metrics
from tool_support import require_tool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "bouncer-queue.rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "bouncer-queue.rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "bouncer-queue.json"
SERIES = re.compile(r"\bbouncer_queue_[a-z0-9_]+")


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool", "Debian package `prometheus`; scripts/services installs it")


def exported_series() -> set[str]:
    """Every sample name a workers process exports, with each metric given a value."""
    metrics = Metrics()
    for outcome in ("completed", "failed", "deferred"):
        metrics.observe_job("q", "j", 0.1, outcome)  # type: ignore[arg-type]
    metrics.dead_lettered("q", "j")
    metrics.bouncer_response("batch_create", 429)
    metrics.set_queue_counts({"q": {"waiting": 1}})
    metrics.set_rate_limit_utilization("batch", 0.5)
    metrics.set_batches_in_flight(1)
    metrics.set_oldest_waiting_age(1.0)
    metrics.set_credits_left(1)
    metrics.emails_verified("deliverable")
    text = metrics.render().decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_promtool_accepts_the_rules_and_their_unit_tests_pass(promtool: str) -> None:
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True, text=True, timeout=60
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_rules_and_their_tests_name_only_real_series() -> None:
    real = exported_series()
    for path in (RULES, RULE_TESTS):
        named = set(SERIES.findall(path.read_text(encoding="utf-8")))
        assert named and named <= real, f"{path.name} names series nobody exports: {sorted(named - real)}"


def test_every_dashboard_query_names_real_series() -> None:
    real = exported_series()
    queries = dashboard_queries()
    assert len(queries) >= 15
    for query in queries:
        named = set(SERIES.findall(query))
        assert named, f"a panel queries no bouncer_queue_ series: {query}"
        assert named <= real, f"{query!r} names series nobody exports: {sorted(named - real)}"
    # Every series family the workers export appears on the dashboard (histogram buckets stand for the histogram).
    shown = {name for query in queries for name in SERIES.findall(query)}
    families = {re.sub(r"_(count|sum|created)$", "_bucket", n) if "duration" in n else n for n in real}
    missing = {n for n in families if not n.endswith("_created") and n not in shown}
    assert missing <= {
        "bouncer_queue_process_virtual_memory_bytes",
        "bouncer_queue_process_start_time_seconds",
        "bouncer_queue_process_max_fds",
    }, sorted(missing)
