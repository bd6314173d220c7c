"""SimulatorState with `batch_fail_rate`: which batches end `failed`, and what a failed batch looks like."""

from __future__ import annotations

import pytest

from bouncer_queue.simulator import ManualClock, SimulatorConfig, SimulatorHTTPError, SimulatorState

KEY = "key-a"
EMAILS: list[tuple[str, str | None]] = [(f"user{i}@example.com", None) for i in range(20)]


def _state(**overrides: object) -> tuple[SimulatorState, ManualClock]:
    clock = ManualClock()
    settings: dict[str, object] = {"speed": 10.0, "queue_delay_seconds": 1.0, "seed": "unit", "credits": 100}
    settings.update(overrides)
    return SimulatorState(SimulatorConfig(**settings), clock=clock), clock  # type: ignore[arg-type]


def _error(call: object) -> SimulatorHTTPError:
    with pytest.raises(SimulatorHTTPError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def _final_statuses(**overrides: object) -> list[str]:
    state, clock = _state(max_parallel=1_000, credits=1_000, **overrides)
    ids = [state.create_batch(KEY, EMAILS[:1], None)["batchId"] for _ in range(300)]
    clock.advance(60)
    return [state.batch_status(KEY, batch_id, with_stats=False)["status"] for batch_id in ids]


def test_a_failed_batch_runs_then_fails_and_refunds_its_credits() -> None:
    state, clock = _state(batch_fail_rate=1.0)
    batch_id = state.create_batch(KEY, EMAILS, "http://hook.test/done")["batchId"]
    assert state.credits_of(KEY) == 80

    clock.advance(1.5)
    assert state.batch_status(KEY, batch_id, with_stats=True)["status"] == "processing"
    clock.advance(2.0)
    failed = state.batch_status(KEY, batch_id, with_stats=True)
    assert failed["status"] == "failed"
    assert "credits" not in failed and "completed" not in failed and "started" in failed
    assert state.credits_of(KEY) == 100

    error = _error(lambda: state.download(KEY, batch_id, "all"))
    assert (error.status, error.message) == (400, "batch is not completed yet")
    assert _error(lambda: state.finish(KEY, batch_id)).status == 400
    [(url, body)] = state.take_callbacks()
    assert (url, body["status"]) == ("http://hook.test/done", "failed")
    state.delete(KEY, batch_id)  # an ended batch, like a completed one
    assert _error(lambda: state.batch_status(KEY, batch_id, with_stats=False)).status == 404


def test_a_failed_batch_frees_its_parallel_slot() -> None:
    state, clock = _state(batch_fail_rate=1.0, max_parallel=1)
    first = state.create_batch(KEY, EMAILS, None)["batchId"]
    second = state.create_batch(KEY, EMAILS, None)["batchId"]
    clock.advance(1.0 + 2.0 + 0.5)  # the first ran 2 s and failed; the second has run since
    assert state.batch_status(KEY, first, with_stats=False)["status"] == "failed"
    assert state.batch_status(KEY, second, with_stats=False)["status"] == "processing"


def test_finish_before_the_end_completes_a_batch_drawn_to_fail() -> None:
    state, clock = _state(batch_fail_rate=1.0)
    batch_id = state.create_batch(KEY, EMAILS, None)["batchId"]
    clock.advance(2.0)  # 10 verified
    state.finish(KEY, batch_id)
    done = state.batch_status(KEY, batch_id, with_stats=False)
    assert (done["status"], done["credits"]) == ("completed", 10)
    assert state.credits_of(KEY) == 90


def test_the_failing_share_is_reproducible_and_off_by_default() -> None:
    statuses = _final_statuses(batch_fail_rate=0.3)
    assert statuses == _final_statuses(batch_fail_rate=0.3)
    assert statuses != _final_statuses(batch_fail_rate=0.3, seed="other")
    assert set(statuses) == {"completed", "failed"}
    assert 45 < statuses.count("failed") < 135
    assert set(_final_statuses()) == {"completed"}


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_the_rate_is_validated(rate: float) -> None:
    with pytest.raises(ValueError, match="batch_fail_rate"):
        SimulatorConfig(batch_fail_rate=rate)
