"""The Bouncer error tree: what the client raises, and the only place where HTTP status codes are read.

    BouncerError                   (bouncer_queue.errors.VerifierError)       retryable
     ├── BouncerAPIError           Bouncer answered with an error status        no
     │    ├── BadRequest           400 a malformed request                      no
     │    ├── BatchStateError      405, or 400 "batch ... wrong state"          no
     │    ├── AuthError            401 missing or unknown API key               no
     │    ├── InsufficientCredits  402 "<N> credits left"                       no
     │    ├── Forbidden            403                                          no
     │    ├── BatchNotFound        404 "request <id> does not exist"            no
     │    ├── RateLimited          429 "too many requests"                      yes
     │    └── ServerError          5xx                                          yes
     └── BouncerUnavailable        no usable answer (connect/read failure)      yes

`BouncerUnavailable.request_sent` tells whether Bouncer may have acted on the request: False only when the
connection was never made, so a batch create may be repeated without paying twice. The pipeline's
defer/retry/dead-letter policy reads nothing but these classes and their `retryable` attribute.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import httpx

from bouncer_queue.errors import VerifierError

_MAX_MESSAGE = 300
_CREDITS_LEFT = re.compile(r"(-?\d+)\s+credits?\s+left", re.IGNORECASE)
_STATE_WORDS = ("state", "not completed", "has to be running", "is running", "not running", "already")


class BouncerError(VerifierError):
    """The Bouncer API call failed."""

    retryable: ClassVar[bool] = False


class BouncerAPIError(BouncerError):
    """Bouncer answered with an error status."""

    def __init__(self, status_code: int, message: str) -> None:
        self.status_code = status_code
        self.bouncer_message = message
        super().__init__(f"Bouncer answered HTTP {status_code}: {message}")

    @property
    def message(self) -> str:
        """Bouncer's own `message` text (or the body, trimmed, when it sent no JSON)."""
        return self.bouncer_message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code}, message={self.bouncer_message!r})"


class BadRequest(BouncerAPIError):
    """Bouncer rejected the request as malformed (400)."""


class BatchStateError(BouncerAPIError):
    """The batch is in the wrong state for this call (405, or 400 about the batch state)."""


class AuthError(BouncerAPIError):
    """The API key is missing or unknown (401)."""


class InsufficientCredits(BouncerAPIError):
    """The account has not enough credits (402)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(status_code, message)
        found = _CREDITS_LEFT.search(message)
        self.credits_left: int | None = int(found.group(1)) if found else None


class Forbidden(BouncerAPIError):
    """Bouncer refused the request (403)."""


class BatchNotFound(BouncerAPIError):
    """No batch has that id for this account (404)."""


class RateLimited(BouncerAPIError):
    """Too many requests in the current window (429)."""

    retryable: ClassVar[bool] = True


class ServerError(BouncerAPIError):
    """Bouncer failed on its side (5xx)."""

    retryable: ClassVar[bool] = True


class BouncerUnavailable(BouncerError):
    """Bouncer could not be reached or gave no usable answer."""

    retryable: ClassVar[bool] = True

    def __init__(self, message: str | None = None, *, request_sent: bool) -> None:
        super().__init__(message)
        #: False only when the request certainly never reached Bouncer (safe to repeat a paid call).
        self.request_sent = request_sent

    def __repr__(self) -> str:
        return f"BouncerUnavailable({self.message!r}, request_sent={self.request_sent})"


_BY_STATUS: dict[int, type[BouncerAPIError]] = {
    400: BadRequest,
    401: AuthError,
    402: InsufficientCredits,
    403: Forbidden,
    404: BatchNotFound,
    405: BatchStateError,
    429: RateLimited,
}


def _message_of(response: httpx.Response) -> str:
    """Bouncer's `message` (or `error`), else the trimmed body; error bodies may be non-JSON."""
    text = response.text
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for field in ("message", "error"):
            value = body.get(field)
            if isinstance(value, str) and value:
                return value[:_MAX_MESSAGE]
    return text.strip()[:_MAX_MESSAGE] or response.reason_phrase


def _is_state_message(message: str) -> bool:
    lowered = message.lower()
    return "batch" in lowered and any(word in lowered for word in _STATE_WORDS)


def error_class_for(status_code: int, message: str) -> type[BouncerAPIError]:
    """The error class of an error status and Bouncer's message."""
    if status_code >= 500:
        return ServerError
    if status_code == 400 and _is_state_message(message):
        return BatchStateError
    return _BY_STATUS.get(status_code, BouncerAPIError)


def from_response(response: httpx.Response) -> BouncerAPIError:
    """The typed error for an error response (the HTTP status decides; the body's `status` is ignored)."""
    message = _message_of(response)
    return error_class_for(response.status_code, message)(response.status_code, message)
