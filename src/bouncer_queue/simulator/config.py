"""SimulatorConfig: every knob of the local Bouncer, with Bouncer's documented defaults.

Tests scale the knobs (a high `speed`, small limits or windows); the CLI maps one option to each field.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SimulatorConfig:
    """Accounts, throughput, limits and error injection of the simulator."""

    #: Accepted API keys; empty accepts any non-empty key. Never shown in reprs.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    #: Starting credit balance of each key.
    credits: int = 1_000_000
    #: Emails verified per second in each processing batch (Bouncer: 100k-200k an hour, ~40/s).
    speed: float = 40.0
    #: Batches processed at once per key; the others wait as `queued`.
    max_parallel: int = 25
    #: Requests per window to the batch endpoints other than create (status, download, finish, delete).
    batch_limit: int = 200
    create_limit: int = 60
    credits_limit: int = 10
    verify_limit: int = 1000
    window_seconds: float = 60.0
    #: Probability of answering 503 instead of serving a request (drawn from `seed` and a request counter).
    fail_rate: float = 0.0
    seed: str = "bouncer-simulator"
    #: Time a new batch stays `queued` before it may start.
    queue_delay_seconds: float = 0.5
    #: Error bodies carry `status` as a string ("402"), as some Bouncer examples do.
    string_status: bool = False
    #: Whether `unknown` results are charged (no public Bouncer statement; charged by default).
    charge_unknown: bool = True
    #: Whether repeated addresses in a batch are charged (free by default).
    charge_duplicates: bool = False
    #: On finish, return the unverified emails as `unknown` instead of dropping them.
    finish_returns_unknown: bool = False
    max_batch_size: int = 100_000
    #: Attempts to POST a batch's final status to its callback URL.
    callback_attempts: int = 3

    def __post_init__(self) -> None:
        if self.speed <= 0 or self.max_parallel < 1 or self.window_seconds <= 0:
            raise ValueError("speed, max_parallel and window_seconds must be positive")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
