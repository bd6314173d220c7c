"""SimulatorState on a manual clock: the batch state machine, parallel cap, limits, credits, finish and delete."""

from __future__ import annotations

import json

import pytest
from starlette.responses import JSONResponse

from bouncer_queue.simulator import ManualClock, SimulatorConfig, SimulatorHTTPError, SimulatorState
from bouncer_queue.simulator.results import expected_result

KEY = "key-a"


def _state(**overrides: object) -> tuple[SimulatorState, ManualClock]:
    clock = ManualClock()
    settings: dict[str, object] = {"speed": 10.0, "queue_delay_seconds": 1.0, "seed": "unit"}
    settings.update(overrides)
    return SimulatorState(SimulatorConfig(**settings), clock=clock), clock  # type: ignore[arg-type]


def _emails(n: int, domain: str = "example.com") -> list[tuple[str, str | None]]:
    return [(f"user{i}@{domain}", None) for i in range(n)]


def _error(call: object) -> SimulatorHTTPError:
    with pytest.raises(SimulatorHTTPError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_queued_processing_completed_on_the_clock() -> None:
    state, clock = _state()
    batch_id = state.create_batch(KEY, _emails(20), None)["batchId"]
    assert state.batch_status(KEY, batch_id, with_stats=True)["status"] == "queued"

    clock.advance(1.0 + 0.5)  # started after the queue delay, 5 of 20 verified at 10/s
    running = state.batch_status(KEY, batch_id, with_stats=True)
    assert (running["status"], running["processed"]) == ("processing", 5)
    assert "started" in running and "completed" not in running and "credits" not in running
    assert sum(running["stats"].values()) == 5

    clock.advance(2.0)
    done = state.batch_status(KEY, batch_id, with_stats=True)
    assert (done["status"], done["processed"], done["credits"]) == ("completed", 20, 20)
    assert done["completed"].endswith("Z") and len(done["completed"]) == len("2024-05-02T09:14:03.512Z")


def test_processed_is_monotonic() -> None:
    state, clock = _state()
    batch_id = state.create_batch(KEY, _emails(50), None)["batchId"]
    seen = []
    for _ in range(12):
        clock.advance(0.5)
        seen.append(state.batch_status(KEY, batch_id, with_stats=True)["processed"])
    assert seen == sorted(seen) and seen[-1] == 50


def test_verdicts_drawn_ahead_or_on_demand_are_the_same_results() -> None:
    # A create draws no verdicts (the app's verdict_loop draws them between requests, a little at a time), so
    # answers must not depend on when, or in how many steps, they were drawn.
    ahead, ahead_clock = _state(speed=10.0, queue_delay_seconds=1.0)
    lazy, lazy_clock = _state(speed=10.0, queue_delay_seconds=1.0)
    entries = [*_emails(30), ("Deliverable@Sandbox.Usebouncer.com", "crm-1"), ("not an address", None)]
    ahead_id = ahead.create_batch(KEY, entries, None)["batchId"]
    lazy_id = lazy.create_batch(KEY, entries, None)["batchId"]
    assert not ahead.compute_verdicts(7)  # queued: nothing is due yet
    ahead_clock.advance(1.0 + 0.5)  # 5 verified; drawn up to a second of processing (10) ahead of that
    steps = 0
    while ahead.compute_verdicts(7):
        steps += 1
    assert steps == 2 and not ahead.compute_verdicts(7)
    assert ahead.batch_status(KEY, ahead_id, with_stats=True)["processed"] == 5
    for state, clock, batch_id in ((ahead, ahead_clock, ahead_id), (lazy, lazy_clock, lazy_id)):
        clock.advance(5.0)
        while state is ahead and ahead.compute_verdicts(7):
            pass
        assert state.batch_status(KEY, batch_id, with_stats=True)["status"] == "completed"
    expected = [expected_result(email, "unit", name=name, now=1_700_000_000.0) for email, name in entries]
    assert ahead.download(KEY, ahead_id, "all") == lazy.download(KEY, lazy_id, "all") == expected
    ahead_view = ahead.batch_status(KEY, ahead_id, with_stats=True) | {"batchId": "same"}
    assert ahead_view == lazy.batch_status(KEY, lazy_id, with_stats=True) | {"batchId": "same"}


def test_parallel_cap_keeps_extra_batches_queued() -> None:
    state, clock = _state(max_parallel=2)
    ids = [state.create_batch(KEY, _emails(10), None)["batchId"] for _ in range(3)]
    other = state.create_batch("key-b", _emails(10), None)["batchId"]
    clock.advance(1.5)
    assert [state.batch_status(KEY, i, with_stats=False)["status"] for i in ids] == [
        "processing",
        "processing",
        "queued",
    ]
    assert state.batch_status("key-b", other, with_stats=False)["status"] == "processing"  # the cap is per key
    clock.advance(1.0)  # the first two completed at t=2, so the third started then
    third = state.batch_status(KEY, ids[2], with_stats=True)
    assert (third["status"], third["processed"]) == ("processing", 5)


def test_rate_limit_windows_per_group_and_key() -> None:
    state, clock = _state(batch_limit=3, credits_limit=1, window_seconds=10)
    for _ in range(3):
        state.admit(KEY, "batch")
    assert _error(lambda: state.admit(KEY, "batch")).status == 429
    state.admit(KEY, "credits")  # another group has its own window
    state.admit("key-b", "batch")  # and another key too
    clock.advance(10)
    state.admit(KEY, "batch")


def test_credits_reserved_settled_and_checked() -> None:
    state, clock = _state(credits=10, charge_unknown=False)
    entries = [*_emails(6), ("deliverable@sandbox.usebouncer.com", None), ("USER0@example.com", None)]
    created = state.create_batch(KEY, entries, None)
    assert (created["quantity"], created["duplicates"]) == (7, 1)
    assert state.credits_of(KEY) == 4  # 6 reserved: sandbox and duplicate are free

    error = _error(lambda: state.create_batch(KEY, _emails(5, "other.com"), None))
    assert (error.status, error.message) == (402, "4 credits left")

    clock.advance(5)
    done = state.batch_status(KEY, created["batchId"], with_stats=True)
    unknown = sum(1 for r in state.download(KEY, created["batchId"], "unknown") if "sandbox" not in r["email"])
    assert done["credits"] == 6 - unknown
    assert state.credits_of(KEY) == 4 + unknown  # unknown results refunded under charge_unknown=False


def test_duplicates_charged_when_configured() -> None:
    state, _ = _state(credits=10, charge_duplicates=True)
    state.create_batch(KEY, [("a@example.com", None), ("A@EXAMPLE.COM", None)], None)
    assert state.credits_of(KEY) == 8


def test_finish_refunds_the_unverified_emails() -> None:
    state, clock = _state(credits=100)
    batch_id = state.create_batch(KEY, _emails(40), None)["batchId"]
    clock.advance(2.0)  # 10 verified
    state.finish(KEY, batch_id)
    done = state.batch_status(KEY, batch_id, with_stats=True)
    assert (done["status"], done["processed"], done["credits"]) == ("completed", 10, 10)
    assert len(state.download(KEY, batch_id, "all")) == 10
    assert state.credits_of(KEY) == 90
    assert _error(lambda: state.finish(KEY, batch_id)).message == "batch has to be running to finish"


def test_finish_can_return_unverified_as_unknown() -> None:
    state, clock = _state(finish_returns_unknown=True)
    batch_id = state.create_batch(KEY, _emails(40), None)["batchId"]
    clock.advance(2.0)
    state.finish(KEY, batch_id)
    results = state.download(KEY, batch_id, "all")
    assert len(results) == 40 and results[-1]["status"] == "unknown"


def test_delete_only_when_completed_then_gone() -> None:
    state, clock = _state()
    batch_id = state.create_batch(KEY, _emails(5), None)["batchId"]
    assert _error(lambda: state.delete(KEY, batch_id)).status == 405
    clock.advance(5)
    state.delete(KEY, batch_id)
    error = _error(lambda: state.batch_status(KEY, batch_id, with_stats=False))
    assert (error.status, error.message) == (404, f"request {batch_id} does not exist")


def test_batches_of_another_key_are_not_found() -> None:
    state, _ = _state()
    batch_id = state.create_batch(KEY, _emails(1), None)["batchId"]
    assert _error(lambda: state.batch_status("key-b", batch_id, with_stats=False)).status == 404


def test_download_rules() -> None:
    state, _ = _state()
    batch_id = state.create_batch(KEY, _emails(1), None)["batchId"]
    assert _error(lambda: state.download(KEY, batch_id, "all")).message == "batch is not completed yet"
    assert _error(lambda: state.download(KEY, batch_id, "good")).status == 400


def test_batch_size_limits() -> None:
    state, _ = _state(max_batch_size=3)
    assert _error(lambda: state.create_batch(KEY, [], None)).status == 400
    assert _error(lambda: state.create_batch(KEY, _emails(4), None)).message == "too many emails"


def test_api_keys_and_injected_failures() -> None:
    state, _ = _state(api_keys=("only",))
    assert _error(lambda: state.authenticate("other")).status == 401
    assert _error(lambda: state.authenticate(None)).message == "user not found"
    assert state.authenticate("only") == "only"

    flaky, _ = _state(fail_rate=0.3)
    failures = []
    for _ in range(1_000):
        try:
            flaky.admit(KEY, "verify")
            failures.append(False)
        except SimulatorHTTPError as exc:
            failures.append(exc.status == 503)
    again, _ = _state(fail_rate=0.3)
    replay = []
    for _ in range(1_000):
        try:
            again.admit(KEY, "verify")
            replay.append(False)
        except SimulatorHTTPError:
            replay.append(True)
    assert failures == replay and 200 < sum(failures) < 400


def test_realtime_verify_charges_except_sandbox() -> None:
    state, _ = _state(credits=3)
    state.verify(KEY, "deliverable@sandbox.usebouncer.com", timeout=10, with_toxicity=False)
    assert state.credits_of(KEY) == 3
    result = state.verify(KEY, "a@example.com", timeout=10, with_toxicity=True)
    assert state.credits_of(KEY) == 1 and result["toxic"] in ("yes", "no")
    state.verify(KEY, "b@example.com", timeout=10, with_toxicity=False)
    assert _error(lambda: state.verify(KEY, "c@example.com", timeout=10, with_toxicity=False)).status == 402


@pytest.mark.parametrize("finish_returns_unknown", [False, True])
@pytest.mark.parametrize("kind", ["all", "deliverable", "risky", "undeliverable", "unknown"])
def test_the_download_body_is_the_json_response_of_the_results(kind: str, finish_returns_unknown: bool) -> None:
    # download_json sends texts made with the results; it must be what the JSON response of `download` was.
    state, clock = _state(finish_returns_unknown=finish_returns_unknown)
    entries = [*_emails(200), ("Zo\u00eb@example.com", 'Zo\u00eb \u2603 "q" \\')]
    batch_id = state.create_batch(KEY, entries, None)
    clock.advance(1.0 + 5.0)  # half verified, then stopped: the rest is unverified
    state.finish(KEY, batch_id["batchId"])

    body = state.download_json(KEY, batch_id["batchId"], kind)

    assert body == JSONResponse(state.download(KEY, batch_id["batchId"], kind)).body
    assert json.loads(body) == state.download(KEY, batch_id["batchId"], kind)
