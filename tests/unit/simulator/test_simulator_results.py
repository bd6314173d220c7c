"""The result generator: deterministic per seed, sandbox addresses forced, a realistic distribution."""

from __future__ import annotations

from collections import Counter
from random import Random

import pytest

from bouncer_queue.simulator import expected_result
from bouncer_queue.simulator.results import _TOXICITY_CUMULATIVE, _TOXICITY_WEIGHTS, _weighted

SANDBOX = "sandbox.usebouncer.com"


def test_same_email_same_result_and_case_insensitive() -> None:
    first = expected_result("Jane.Doe@Example.com", "s1")
    assert first == expected_result("Jane.Doe@Example.com", "s1")
    assert {k: v for k, v in expected_result("jane.doe@example.com", "s1").items() if k != "email"} == {
        k: v for k, v in first.items() if k != "email"
    }


def test_seed_changes_the_draw() -> None:
    emails = [f"person{i}@example.com" for i in range(200)]
    a = [expected_result(e, "a")["status"] for e in emails]
    b = [expected_result(e, "b")["status"] for e in emails]
    assert a != b


def test_distribution_on_20000_addresses() -> None:
    counts = Counter(expected_result(f"user{i}@company{i % 97}.com", "dist")["status"] for i in range(20_000))
    shares = {status: n / 20_000 for status, n in counts.items()}
    assert shares["deliverable"] == pytest.approx(0.70, abs=0.02)
    assert shares["risky"] == pytest.approx(0.14, abs=0.015)
    assert shares["undeliverable"] == pytest.approx(0.12, abs=0.015)
    assert shares["unknown"] == pytest.approx(0.04, abs=0.01)


def test_realtime_has_more_unknown() -> None:
    emails = [f"rt{i}@example.net" for i in range(5_000)]
    batch = sum(expected_result(e, "rt")["status"] == "unknown" for e in emails)
    realtime = sum(expected_result(e, "rt", realtime=True)["status"] == "unknown" for e in emails)
    short = sum(expected_result(e, "rt", realtime=True, timeout=1)["status"] == "unknown" for e in emails)
    assert batch < realtime < short


def test_status_reason_score_and_flags_are_consistent() -> None:
    ranges = {"deliverable": (80, 100), "risky": (30, 79), "undeliverable": (0, 20)}
    for i in range(3_000):
        result = expected_result(f"c{i}@example.org", "consistent")
        status, reason = result["status"], result["reason"]
        if status == "unknown":
            assert "score" not in result and reason in {
                "timeout",
                "unavailable_smtp",
                "dns_error",
                "unsupported",
                "unknown",
            }
            continue
        low, high = ranges[status]
        assert low <= result["score"] <= high
        if status == "risky":
            assert "yes" in (result["domain"]["acceptAll"], result["account"]["fullMailbox"])
        assert 0 <= result["toxicity"] <= 5 and result["toxic"] == "unknown"


@pytest.mark.parametrize(
    ("local", "status", "reason", "flag"),
    [
        ("deliverable", "deliverable", "accepted_email", None),
        ("deliverable+42", "deliverable", "accepted_email", None),
        ("undeliverable", "undeliverable", "rejected_email", None),
        ("unknown", "unknown", "unknown", None),
        ("accept-all", "risky", "low_deliverability", ("domain", "acceptAll")),
        ("disposable", "risky", "low_quality", ("domain", "disposable")),
        ("free", "deliverable", "accepted_email", ("domain", "free")),
        ("timeout", "unknown", "timeout", None),
        ("greylist", "unknown", "unavailable_smtp", None),
    ],
)
def test_sandbox_addresses(local: str, status: str, reason: str, flag: tuple[str, str] | None) -> None:
    for seed in ("x", "y"):
        result = expected_result(f"{local}@{SANDBOX}", seed, now=0)
        assert (result["status"], result["reason"]) == (status, reason)
        if flag:
            assert result[flag[0]][flag[1]] == "yes"
    assert ("retryAfter" in expected_result(f"greylist@{SANDBOX}", "x", now=0)) is True


@pytest.mark.parametrize("email", ["plainaddress", "a@b", "two@@example.com", "sp ace@example.com", "ü@example.com"])
def test_invalid_syntax(email: str) -> None:
    assert (expected_result(email, "s")["status"], expected_result(email, "s")["reason"]) == (
        "undeliverable",
        "invalid_email",
    )


def test_domain_rules() -> None:
    assert expected_result("x@nonexistent.example", "s")["reason"] == "invalid_domain"
    assert expected_result("x@mailinator.com", "s")["domain"]["disposable"] == "yes"
    gmail = expected_result("x@gmail.com", "s")
    assert gmail["domain"]["free"] == "yes" and gmail["provider"] == "google.com"
    assert expected_result("info@example.com", "s")["account"]["role"] == "yes"
    assert expected_result("x@example.com", "s", name="crm-9")["name"] == "crm-9"


def test_a_weighted_draw_is_the_one_random_choices_makes() -> None:
    # The simulator's verdicts stay what they were when its draws stopped calling random.choices (the same
    # addresses get the same answers across versions): one pick, from the same state, the same item.
    ours, theirs = Random(7), Random(7)
    population = range(len(_TOXICITY_WEIGHTS))
    picks = [_weighted(ours, population, _TOXICITY_CUMULATIVE) for _ in range(5_000)]
    assert picks == [theirs.choices(population, _TOXICITY_WEIGHTS)[0] for _ in range(5_000)]
    assert set(picks) == set(population)
