"""The rate limiter's pure parts: budgets from settings, wait rounding, lock keys and misuse errors (no database)."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from bouncer_queue.config import Settings
from bouncer_queue.errors import ConfigError
from bouncer_queue.storage import ratelimit
from bouncer_queue.storage.ratelimit import Budget, RateLimiter, budgets_from_settings, ceil_ms


def test_default_budgets_are_the_bouncer_limits_over_one_minute():
    assert budgets_from_settings(Settings()) == {
        "batch": Budget(180, 60.0),
        "create": Budget(60, 60.0),
        "credits": Budget(10, 60.0),
    }


def test_budgets_follow_the_settings():
    settings = Settings(
        rate_limit_max=30, rate_limit_window_seconds=2, rate_limit_create_max=5, rate_limit_credits_max=1
    )
    assert budgets_from_settings(settings) == {
        "batch": Budget(30, 2.0),
        "create": Budget(5, 2.0),
        "credits": Budget(1, 2.0),
    }


@pytest.mark.parametrize(("max_requests", "window"), [(0, 60.0), (10, 0.0), (10, -1.0)])
def test_a_budget_that_can_never_admit_anything_is_rejected(max_requests: int, window: float):
    with pytest.raises(ValueError, match="max_requests >= 1"):
        Budget(max_requests, window)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(30.0, 30_000), (59.25, 59_250), (0.0012, 2), (1e-9, 1), (0.0, 1), (0.1 + 0.2, 300), (59.250000000001, 59_250)],
)
def test_wait_is_rounded_up_to_whole_ms_and_never_zero(seconds: float, expected: int):
    assert ceil_ms(seconds) == expected


def test_lock_keys_are_stable_signed_64_bit_and_distinct():
    keys = {name: ratelimit._lock_key(name) for name in ("batch", "create", "credits")}
    assert len(set(keys.values())) == 3
    assert all(-(2**63) <= key < 2**63 for key in keys.values())
    assert ratelimit._lock_key("batch") == keys["batch"]
    assert all(len(ratelimit._lock_name(name * 40)) <= 64 for name in keys)


async def test_asking_for_no_budget_or_an_unknown_one_is_a_usage_error():
    engine = create_async_engine("sqlite+aiosqlite://")
    limiter = RateLimiter(engine, {"batch": Budget(1, 60)})
    with pytest.raises(ValueError, match="at least one budget"):
        await limiter.acquire([], "status")
    with pytest.raises(ValueError, match=r"unknown rate-limit budget\(s\) \['verify'\]"):
        await limiter.acquire(["batch", "verify"], "status")
    with pytest.raises(ValueError, match="unknown"):
        await limiter.utilization("verify")
    await engine.dispose()


def test_an_unsupported_database_is_a_config_error():
    engine = create_async_engine("sqlite+aiosqlite://")
    engine.dialect.name = "mssql"  # no such driver installed; only the name matters to the check
    with pytest.raises(ConfigError, match="mssql"):
        RateLimiter(engine, {"batch": Budget(1, 60)})
