"""The Bouncer API client: typed errors, wire models, and the factories that build it from Settings."""

from __future__ import annotations

from bouncer_queue.bouncer.client import ApiKeyProvider, BouncerClient, ResponseHook
from bouncer_queue.bouncer.errors import (
    AuthError,
    BadRequest,
    BatchNotFound,
    BatchStateError,
    BouncerAPIError,
    BouncerError,
    BouncerUnavailable,
    Forbidden,
    InsufficientCredits,
    RateLimited,
    ServerError,
    from_response,
)
from bouncer_queue.bouncer.http import make_bouncer_client, make_http_client
from bouncer_queue.bouncer.schemas import AccountInfo, BatchBody, BatchInfo, DnsInfo, DomainInfo, VerificationResult

__all__ = [
    "AccountInfo",
    "ApiKeyProvider",
    "AuthError",
    "BadRequest",
    "BatchBody",
    "BatchInfo",
    "BatchNotFound",
    "BatchStateError",
    "BouncerAPIError",
    "BouncerClient",
    "BouncerError",
    "BouncerUnavailable",
    "DnsInfo",
    "DomainInfo",
    "Forbidden",
    "InsufficientCredits",
    "RateLimited",
    "ResponseHook",
    "ServerError",
    "VerificationResult",
    "from_response",
    "make_bouncer_client",
    "make_http_client",
]
