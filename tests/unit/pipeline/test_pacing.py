"""The adaptive status poll: when a running batch is likely done, within the floor and the ceiling."""

from __future__ import annotations

from datetime import UTC, datetime

from bouncer_queue.pipeline.pacing import Progress, next_poll_ms

T0 = 1_700_000_000.0
LIMITS = {"floor_ms": 2_000, "ceiling_ms": 15_000}


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, UTC)


def test_the_next_poll_aims_just_past_the_end_at_the_speed_seen_between_two_polls() -> None:
    # 1,000 done at t=2, 3,000 at t=6: 500 per second, 7,000 left = 14 s, plus a 1 % margin.
    delay = next_poll_ms(
        10_000, Progress(3_000, T0 + 6), previous=Progress(1_000, T0 + 2), started=None, submitted=at(0), **LIMITS
    )
    assert delay == 14_140


def test_after_the_first_progress_the_speed_comes_from_bouncers_start_time() -> None:
    delay = next_poll_ms(10_000, Progress(5_000, T0 + 11), previous=None, started=at(1), submitted=at(0), **LIMITS)
    assert delay == 10_100


def test_a_long_batch_is_polled_at_the_ceiling() -> None:
    far = next_poll_ms(100_000, Progress(10, T0 + 20), previous=None, started=at(0), submitted=at(0), **LIMITS)
    assert far == 15_000


def test_a_batch_about_to_finish_is_polled_just_past_its_end_once_then_at_the_floor() -> None:
    # 500 per second: the poll at t=19 aims at t=20.05 and comes a little early, with 50 addresses left (0.1 s).
    early = next_poll_ms(
        10_000, Progress(9_950, T0 + 19.9), previous=Progress(9_500, T0 + 19), started=at(0), submitted=at(0), **LIMITS
    )
    assert early == 2_000  # the last poll was 0.9 s ago: the floor holds, so polls never come closer than that
    after_a_floor = next_poll_ms(
        10_000, Progress(9_950, T0 + 19.9), previous=Progress(1_000, T0 + 2), started=at(0), submitted=at(0), **LIMITS
    )
    assert after_a_floor == 150  # 0.1 s left plus 50 ms: the freed slot does not wait a floor for its poll
    stalled = next_poll_ms(
        10_000, Progress(9_999, T0 + 20), previous=Progress(9_998, T0 + 19.9), started=at(0), submitted=at(0), **LIMITS
    )
    assert stalled == 2_000  # right after a short poll: at the floor again
    nearly = next_poll_ms(10_000, Progress(9_990, T0 + 20), previous=None, started=at(0), submitted=at(0), **LIMITS)
    assert nearly == 100  # the shortest wait below the floor


def test_without_progress_the_wait_grows_with_the_time_since_submission() -> None:
    waits = [
        next_poll_ms(10_000, Progress(0, T0 + s), previous=None, started=None, submitted=at(0), **LIMITS)
        for s in (1, 4, 8, 60)
    ]
    assert waits == [2_000, 4_000, 8_000, 15_000]


def test_progress_that_did_not_move_since_the_last_poll_falls_back_to_the_start_time() -> None:
    delay = next_poll_ms(
        10_000, Progress(4_000, T0 + 10), previous=Progress(4_000, T0 + 8), started=at(0), submitted=at(0), **LIMITS
    )
    assert delay == 13_000  # 400 per second: 15 s left, beyond the ceiling: a floor before the end


def test_a_batch_ending_beyond_the_ceiling_is_next_polled_a_floor_before_its_end_then_just_past_it() -> None:
    # 500 per second from Bouncer's start: 15.5 s left is beyond the 15 s ceiling, so look again 2 s before the
    # end (not at the ceiling, 0.5 s before it, which would leave the slot idle for most of a floor after it).
    first = next_poll_ms(10_000, Progress(2_250, T0 + 4.5), previous=None, started=at(0), submitted=at(0), **LIMITS)
    assert first == 13_500
    last = next_poll_ms(
        10_000, Progress(9_000, T0 + 18), previous=Progress(2_250, T0 + 4.5), started=at(0), submitted=at(0), **LIMITS
    )
    assert last == 2_050  # 2 s left plus the 50 ms margin
    far = next_poll_ms(100_000, Progress(10, T0 + 20), previous=None, started=at(0), submitted=at(0), **LIMITS)
    assert far == 15_000
