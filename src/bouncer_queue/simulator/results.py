"""The simulator's verdicts: a pure, hash-seeded generator of Bouncer result objects.

`expected_result(email, seed)` is what the simulator answers for an address, in every run, so tests anywhere
can compute the expected outcome. Order of rules: syntax (`undeliverable/invalid_email`), sandbox local parts
at sandbox.usebouncer.com (`+tag` allowed; plus our own `timeout` and `greylist`), dead domains
(`invalid_domain`), disposable domains (`risky/low_quality`), then a draw seeded by sha256(seed, lower-cased
address): about 70 % deliverable, 14 % risky, 12 % undeliverable, 4 % unknown (real-time: about 5 points
more unknown, and more again for a `timeout` under 5 s; an address whose `latency.latency_seconds` exceeds the
`timeout` comes back `unknown/timeout`). `retryAfter` depends on the time, so it is set only when `now` is
given; compare results without it. `expected_domain(domain, seed)` is the domain endpoint's answer, built by
the same domain rules.
"""

from __future__ import annotations

import hashlib
import random
from bisect import bisect
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any, TypeVar

from bouncer_queue.emails import is_valid_syntax, normalize_email
from bouncer_queue.simulator.latency import DEFAULT_TIMEOUT, latency_seconds

SANDBOX_DOMAIN = "sandbox.usebouncer.com"
FREE_PROVIDERS = {
    "gmail.com": "google.com",
    "googlemail.com": "google.com",
    "yahoo.com": "yahoo.com",
    "hotmail.com": "outlook.com",
    "outlook.com": "outlook.com",
    "live.com": "outlook.com",
    "aol.com": "aol.com",
    "icloud.com": "icloud.com",
    "gmx.com": "gmx.net",
    "mail.com": "mail.com",
    "proton.me": "proton.me",
    "protonmail.com": "proton.me",
    "yandex.com": "yandex.ru",
}
DISPOSABLE_DOMAINS = frozenset(
    {"mailinator.com", "guerrillamail.com", "10minutemail.com", "trashmail.com", "yopmail.com", "tempmail.com"}
)
DEAD_DOMAINS = frozenset({"nonexistent.example", "no-mx.example", "dead-domain.example"})
ROLE_LOCAL_PARTS = frozenset(
    {"info", "sales", "admin", "support", "contact", "office", "hello", "billing", "marketing", "noreply"}
    | {"no-reply", "postmaster", "webmaster", "hr", "jobs", "team", "help"}
)
UNKNOWN_REASONS = ("timeout", "unavailable_smtp", "dns_error", "unsupported", "unknown")
_UNKNOWN_WEIGHTS = (35, 30, 15, 10, 10)
_TOXICITY_WEIGHTS = (70, 12, 8, 5, 3, 2)
_UNKNOWN_CUMULATIVE = tuple(accumulate(_UNKNOWN_WEIGHTS))
_TOXICITY_CUMULATIVE = tuple(accumulate(_TOXICITY_WEIGHTS))
_TOXICITIES = range(len(_TOXICITY_WEIGHTS))
_GREYLIST_SECONDS = 300


def is_sandbox(email: str) -> bool:
    """True for sandbox.usebouncer.com addresses, which cost no credits."""
    return email.strip().rpartition("@")[2].lower() == SANDBOX_DOMAIN


def iso_ms(epoch_seconds: float) -> str:
    """Bouncer's timestamp form: ISO-8601 UTC with milliseconds and Z."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


T = TypeVar("T")


def _weighted(rng: random.Random, population: Sequence[T], cumulative: Sequence[int]) -> T:
    """`rng.choices(population, weights)[0]`, the same draw by the same steps (CPython's for one pick), without
    summing the weights again for every address: the simulator draws a toxicity for each one it verifies."""
    return population[bisect(cumulative, rng.random() * (cumulative[-1] + 0.0), 0, len(population) - 1)]


def _rng(email: str, seed: str | int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{email.strip().lower()}".encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def _base(email: str, domain: str, provider: str) -> dict[str, Any]:
    return {
        "email": email,
        "status": "deliverable",
        "reason": "accepted_email",
        "domain": {"name": domain, "acceptAll": "no", "disposable": "no", "free": "no"},
        "account": {"role": "no", "disabled": "no", "fullMailbox": "no"},
        "dns": {"type": "MX", "record": f"mx1.{provider}."},
        "provider": provider,
        "score": 95,
        "toxic": "unknown",
        "toxicity": 0,
    }


def _set(result: dict[str, Any], status: str, reason: str, score: int | None) -> dict[str, Any]:
    result["status"], result["reason"] = status, reason
    if score is None:
        result.pop("score", None)
    else:
        result["score"] = score
    return result


def _invalid(email: str) -> dict[str, Any]:
    domain = email.rpartition("@")[2].lower()
    return {
        "email": email,
        "status": "undeliverable",
        "reason": "invalid_email",
        "domain": {"name": domain, "acceptAll": "unknown", "disposable": "unknown", "free": "unknown"},
        "account": {"role": "unknown", "disabled": "unknown", "fullMailbox": "unknown"},
        "dns": {},
        "score": 0,
        "toxic": "unknown",
        "toxicity": 0,
    }


def _unknown(result: dict[str, Any], reason: str, now: float | None, *, greylisted: bool = False) -> dict[str, Any]:
    _set(result, "unknown", reason, None)
    result["domain"]["acceptAll"] = "unknown"
    result["account"].update(disabled="unknown", fullMailbox="unknown")
    # Greylisting: the provider asked us to come back later, which Bouncer reports as `retryAfter`.
    if greylisted and now is not None:
        result["retryAfter"] = iso_ms(now + _GREYLIST_SECONDS)
    return result


def _sandbox(result: dict[str, Any], local: str, now: float | None) -> dict[str, Any] | None:
    kind = local.partition("+")[0]
    if kind == "deliverable":
        return _set(result, "deliverable", "accepted_email", 100)
    if kind == "undeliverable":
        result["account"]["disabled"] = "yes"
        return _set(result, "undeliverable", "rejected_email", 0)
    if kind == "unknown":
        return _unknown(result, "unknown", now)
    if kind == "accept-all":
        result["domain"]["acceptAll"] = "yes"
        return _set(result, "risky", "low_deliverability", 50)
    if kind == "disposable":
        result["domain"]["disposable"] = "yes"
        return _set(result, "risky", "low_quality", 40)
    if kind == "free":
        result["domain"]["free"] = "yes"
        return _set(result, "deliverable", "accepted_email", 95)
    if kind == "timeout":
        return _unknown(result, "timeout", now)
    if kind == "greylist":
        return _unknown(result, "unavailable_smtp", now, greylisted=True)
    return None


def _draw(result: dict[str, Any], rng: random.Random, unknown_share: float, now: float | None) -> dict[str, Any]:
    """The seeded 70/14/12/4 draw, with the unknown share taken from the deliverable one."""
    roll = rng.random()
    if roll < 0.04 + unknown_share:
        reason = _weighted(rng, UNKNOWN_REASONS, _UNKNOWN_CUMULATIVE)
        return _unknown(result, reason, now, greylisted=reason == "unavailable_smtp" and rng.random() < 0.5)
    if roll < 0.16 + unknown_share:
        result["account"]["disabled"] = rng.choice(("yes", "no", "no"))
        return _set(result, "undeliverable", "rejected_email", rng.randint(0, 20))
    if roll < 0.30 + unknown_share:
        if rng.random() < 0.8:
            result["domain"]["acceptAll"] = "yes"
        else:
            result["account"]["fullMailbox"] = "yes"
        return _set(result, "risky", "low_deliverability", rng.randint(30, 79))
    return _set(result, "deliverable", "accepted_email", rng.randint(80, 100))


def _extra_unknown(realtime: bool, timeout: int | None) -> float:
    if not realtime:
        return 0.0
    short = max(0, 5 - timeout) if timeout is not None else 0
    # 4 points here plus about 1 from slow domains timing out (latency.py): Bouncer's "~5 pp more unknown".
    return 0.04 + 0.04 * short


def expected_result(
    email: str,
    seed: str | int,
    *,
    name: str | None = None,
    realtime: bool = False,
    timeout: int | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The result object the simulator returns for `email` (batch by default; `realtime` for GET verify)."""
    address = email.strip()
    if not is_valid_syntax(normalize_email(address)):
        result = _invalid(address)
    else:
        result = _generate(address, seed, _extra_unknown(realtime, timeout), now)
        if realtime and latency_seconds(address, seed) > (timeout or DEFAULT_TIMEOUT):
            result = _unknown(result, "timeout", None)
    if name is not None:
        result["name"] = name
    return result


def _generate(address: str, seed: str | int, unknown_share: float, now: float | None) -> dict[str, Any]:
    local, _, domain = address.lower().rpartition("@")
    rng = _rng(address, seed)
    result = _base(address, domain, FREE_PROVIDERS.get(domain, domain))
    result["toxicity"] = _weighted(rng, _TOXICITIES, _TOXICITY_CUMULATIVE)
    result["domain"]["free"] = "yes" if domain in FREE_PROVIDERS else "no"
    result["account"]["role"] = "yes" if local.partition("+")[0] in ROLE_LOCAL_PARTS else "no"
    if domain == SANDBOX_DOMAIN:
        forced = _sandbox(result, local, now)
        if forced is not None:
            forced["toxicity"] = 0
            return forced
    if _is_dead(domain):
        result["dns"] = {}
        result.pop("provider")
        return _set(result, "undeliverable", "invalid_domain", 0)
    if domain in DISPOSABLE_DOMAINS:
        result["domain"]["disposable"] = "yes"
        return _set(result, "risky", "low_quality", rng.randint(30, 50))
    return _draw(result, rng, unknown_share, now)


def _is_dead(domain: str) -> bool:
    return domain in DEAD_DOMAINS or domain.endswith(".invalid") or "." not in domain


def expected_domain(domain: str, seed: str | int) -> dict[str, Any]:
    """GET /v1.1/domain's `{"domain": {...}}`: the flags, dns and provider an address there gets.

    acceptAll is a per-domain draw (about 1 in 10 `yes`); the per-email generator draws it per address.
    """
    name = domain.strip().lower()
    provider = FREE_PROVIDERS.get(name, name)
    base = _base("", name, provider)
    body: dict[str, Any] = {**base["domain"], "dns": base["dns"], "provider": provider, "toxic": "unknown"}
    body["free"] = "yes" if name in FREE_PROVIDERS else "no"
    if _is_dead(name):
        body["dns"] = {}
        del body["provider"]
    elif name in DISPOSABLE_DOMAINS:
        body["disposable"] = "yes"
    elif _rng(name, f"{seed}\x00domain").random() < 0.1:
        body["acceptAll"] = "yes"
    return {"domain": body}
