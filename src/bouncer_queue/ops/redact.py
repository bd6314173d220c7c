"""Secret redaction for everything the service writes to its logs (the seed's "error message sanitization").

A `Redactor` knows two kinds of secret: the values in force (API key, passwords, whole Redis/database URLs,
given by `Settings.secrets()` and extended with `add_secret` when the key rotates) and generic shapes that are
secret whatever their value (the password of any `scheme://user:PASSWORD@host` URL, `x-api-key: ...`,
`api_key=...`, `Authorization: Basic ...`). `RedactingFilter` applies it to a log record's message, args,
`extra` values, exception text and stack, before any handler formats the record.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

MASK = "***"

#: Shorter values cannot be told apart from ordinary text (a 2-character password would mask every "ab" in the
#: logs); the generic patterns below still hide them in URLs and headers.
MIN_SECRET_LENGTH = 4

_GENERIC_PATTERNS: tuple[re.Pattern[str], ...] = (
    # The password of any URL with credentials. Stops at '/', '?' and '#' so an e-mail address in a query
    # string (common here) is not mistaken for credentials.
    re.compile(r"(?P<keep>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*:)(?P<secret>[^\s@/?#]+)(?=@)"),
    # Authorization header, with or without a scheme word; the scheme stays readable for debugging.
    re.compile(
        r"(?P<keep>(?i:authorization)[\"']?\s*[:=]\s*[\"']?(?:(?i:basic|bearer|token|digest)\s+)?)"
        r"(?P<secret>[^\s\"',;}]+)"
    ),
    # key: value / key=value / 'key': 'value' for API keys, passwords, secrets and tokens. No leading word
    # boundary, so BOUNCER_API_KEY=... and redis_password=... match too.
    re.compile(
        r"(?P<keep>(?i:x-api-key|api[_-]?key|password|passwd|secret|access[_-]?token|auth[_-]?token)"
        r"[\"']?\s*[:=]\s*[\"']?)(?P<secret>[^\s\"',;&}]+)"
    ),
)


class Redactor:
    """Replaces known secrets and secret-shaped text with `***`. Thread-safe; secrets can be added at any time."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self._known: re.Pattern[str] | None = None
        for value in secrets:
            self.add_secret(value)

    def add_secret(self, value: str | None) -> None:
        """Redact `value` from now on (a rotated API key, a new password). Empty and very short values are ignored."""
        variants = _variants(value or "")
        with self._lock:
            merged = self._secrets | variants
            if merged == self._secrets:
                return
            self._secrets = merged
            # Longest first, so a whole URL is masked before a password inside it is.
            ordered = sorted(merged, key=len, reverse=True)
            self._known = re.compile("|".join(re.escape(s) for s in ordered))

    def redact(self, text: str) -> str:
        """Return `text` with every secret masked."""
        known = self._known
        if known is not None:
            text = known.sub(MASK, text)
        for pattern in _GENERIC_PATTERNS:
            text = pattern.sub(lambda m: m["keep"] + MASK, text)
        return text

    def redact_value(self, value: Any) -> Any:
        """Mask secrets inside a log `extra` value, keeping numbers and containers JSON-friendly."""
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {str(k): self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact_value(v) for v in value]
        text = str(value)
        masked = self.redact(text)
        # Keep the object itself when it holds no secret, so formatters can still render it their way.
        return value if masked == text else masked


def _variants(value: str) -> frozenset[str]:
    """The forms a secret can take in a log line: as is, URL-quoted, and (for a URL) its password alone."""
    value = value.strip()
    found = {value, quote(value, safe=""), unquote(value)}
    password = _url_password(value)
    if password:
        found |= {password, unquote(password)}
    return frozenset(v for v in found if len(v) >= MIN_SECRET_LENGTH)


def _url_password(value: str) -> str | None:
    if "://" not in value:
        return None
    try:
        return urlsplit(value).password
    except ValueError:
        return None


#: Attributes every LogRecord has; anything else on a record came from `extra=`.
STANDARD_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime", "taskName"}
)


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of a record, in the order they were given."""
    return {k: v for k, v in record.__dict__.items() if k not in STANDARD_RECORD_ATTRS and not k.startswith("_")}


class RedactingFilter(logging.Filter):
    """A handler filter that masks secrets in the record itself, so every formatter sees only redacted text."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.redactor.redact
        # Render the args into the message first: a secret can hide in an arg's repr or str.
        record.msg = redact(record.getMessage())
        record.args = None
        for key, value in record_extras(record).items():
            setattr(record, key, self.redactor.redact_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            # The formatted traceback above is all a formatter needs; dropping the live exception keeps its
            # unredacted message from being rendered again by another formatter.
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
