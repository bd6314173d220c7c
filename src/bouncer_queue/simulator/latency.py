"""Real-time verify latency: how long the simulated SMTP conversation for an address takes, hash-seeded.

Most addresses answer in a few hundred ms. About one domain in twenty is slow (2-15 s for every address there),
and a domain with a label starting with `slow` (e.g. `slow-mx.example`) never answers. Latencies are unscaled
seconds: whether one exceeds the request's `timeout` decides the result (`unknown/timeout`, see
`results.expected_result`), so results never depend on `SimulatorConfig.latency_scale`, which only scales the
wait the app actually sleeps (`wait_seconds`).
"""

from __future__ import annotations

import hashlib
import math
import random

TYPICAL_SECONDS = (0.15, 0.6)
SLOW_SECONDS = (2.0, 15.0)
SLOW_DOMAIN_SHARE = 0.05
#: Bouncer's default `timeout` of GET /v1.1/email/verify.
DEFAULT_TIMEOUT = 10


def _rng(*parts: str | int) -> random.Random:
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def latency_seconds(email: str, seed: str | int) -> float:
    """Unscaled seconds the real-time verification of `email` takes (`inf` for a domain that never answers)."""
    address = email.strip().lower()
    domain = address.rpartition("@")[2]
    if any(label.startswith("slow") for label in domain.split(".")):
        return math.inf
    per_domain = _rng(seed, "latency-domain", domain)
    if per_domain.random() < SLOW_DOMAIN_SHARE:
        return per_domain.uniform(*SLOW_SECONDS)
    return _rng(seed, "latency", address).uniform(*TYPICAL_SECONDS)


def wait_seconds(result: dict[str, object], latency: float, timeout: int, scale: float) -> float:
    """What the endpoint sleeps before answering: the latency, or the whole `timeout` for a timed-out result."""
    spent = timeout if result.get("reason") == "timeout" else min(latency, timeout)
    return spent * scale
