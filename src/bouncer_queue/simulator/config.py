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
    #: Batch-sync requests per window (Bouncer: 100/min, sent sequentially).
    sync_limit: int = 100
    domain_limit: int = 1000
    #: Toxicity list creates per window; its status, data and delete calls share `batch_limit`.
    toxicity_limit: int = 10
    window_seconds: float = 60.0
    #: Add a Retry-After header (whole seconds until the window frees) to 429s; Bouncer documents none.
    retry_after_header: bool = False
    #: Probability of answering 503 instead of serving a request (drawn from `seed` and a request counter).
    fail_rate: float = 0.0
    #: Share of batches that end `failed` instead of `completed` (drawn from `seed` and the batch's creation counter).
    batch_fail_rate: float = 0.0
    #: Share of batch creates that create and charge the batch, then close the connection without answering
    #: (drawn from `seed` and the creation counter): a lost create response.
    drop_create_response_rate: float = 0.0
    #: Seconds a batch create waits after creating and charging the batch, before it answers (a slow create).
    create_latency_seconds: float = 0.0
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
    max_sync_size: int = 10_000
    #: How long a batch-sync result is cached per key; a repeat within it is answered again free of charge.
    sync_cache_seconds: float = 86_400.0
    #: Multiplies real-time verify latency (typically a few hundred ms, slow domains up to `timeout`); 0 = instant.
    latency_scale: float = 0.01
    #: Share of toxicity lists that end in `error` (drawn from `seed` and the list's addresses).
    toxicity_error_rate: float = 0.02
    #: Attempts to POST a batch's final status to its callback URL.
    callback_attempts: int = 3

    def __post_init__(self) -> None:
        if self.speed <= 0 or self.max_parallel < 1 or self.window_seconds <= 0:
            raise ValueError("speed, max_parallel and window_seconds must be positive")
        rates = (self.fail_rate, self.batch_fail_rate, self.toxicity_error_rate, self.drop_create_response_rate)
        if not all(0.0 <= rate <= 1.0 for rate in rates):
            raise ValueError(
                "fail_rate, batch_fail_rate, toxicity_error_rate and drop_create_response_rate must be between 0 and 1"
            )
        if self.latency_scale < 0 or self.sync_cache_seconds < 0 or self.create_latency_seconds < 0:
            raise ValueError("latency_scale, sync_cache_seconds and create_latency_seconds must not be negative")
