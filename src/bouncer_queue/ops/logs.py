"""Structured logging for every process of the service: workers, CLI, HTTP server.

`configure_logging` installs one redacting handler on the package logger (`bouncer_queue`) and on bullmq's,
writing either plain text (`time level logger message key=value...`) or one JSON object per line. Stage events
log with a stable `extra={"action": "batch_submitted", ...}`; those fields become keys in both formats. The
entry points call it once, after building Settings, as
`configure_logging(level_from_env(settings.log_level), json=settings.log_json, secrets=settings.secrets())`.
"""

from __future__ import annotations

import json as jsonlib
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from bouncer_queue.ops.redact import RedactingFilter, Redactor, record_extras

LOGGER_NAMES = ("bouncer_queue", "bullmq")

#: DEBUG=... words that switch on debug logging: the seed's `DEBUG=bull*`, our own name, and node's "all".
_DEBUG_WORDS = ("bull", "bouncer")

_BARE_VALUE = re.compile(r"^[^\s\"'=]+$")


def level_from_env(default: str, environ: Mapping[str, str] | None = None) -> str:
    """`default`, or "DEBUG" when the DEBUG variable names bull/bouncer (`DEBUG=bull*`) or is `*`."""
    env = os.environ if environ is None else environ
    for word in re.split(r"[\s,]+", env.get("DEBUG", "").lower()):
        # A leading '-' excludes a namespace in node's `debug` syntax, so it must not switch debug on.
        if word and not word.startswith("-") and (word == "*" or any(w in word for w in _DEBUG_WORDS)):
            return "DEBUG"
    return default


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text_value(value: Any) -> str:
    """A string bare when it can be, quoted when it has spaces or quotes; anything else as compact JSON."""
    if isinstance(value, str):
        return value if _BARE_VALUE.match(value) else jsonlib.dumps(value, ensure_ascii=False)
    return jsonlib.dumps(value, default=str, separators=(",", ":"), ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`2024-05-01T12:00:00.123Z INFO bouncer_queue.pipeline.submit batch submitted action=batch_submitted ...`."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, record.name, record.getMessage()]
        parts += [f"{key}={_text_value(value)}" for key, value in record_extras(record).items()]
        line = " ".join(parts)
        trailer = self._trailer(record)
        return f"{line}\n{trailer}" if trailer else line

    def _trailer(self, record: logging.LogRecord) -> str:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        chunks = [record.exc_text, record.stack_info]
        return "\n".join(c for c in chunks if c)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the `extra` fields, then exc_info/stack_info.

    The base keys win over an `extra` field of the same name, so a line always parses to the same schema.
    """

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record_extras(record).items():
            document.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exc_info"] = record.exc_text
        if record.stack_info:
            document["stack_info"] = record.stack_info
        return jsonlib.dumps(document, default=str, ensure_ascii=False)


class _OpsHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so configuring again replaces it instead of adding another.

    Without a stream of its own it writes to whatever `sys.stderr` is at the time of each record, not the one of
    the moment it was made: a caller that swaps stderr for a while (a test runner capturing output, typer's
    CliRunner) and closes its stand-in afterwards must not leave the logs writing to a closed file.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._follows_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follows_stderr:
            self.stream = sys.stderr
        super().emit(record)


def configure_logging(
    level: str,
    *,
    json: bool,
    secrets: Sequence[str] = (),
    stream: TextIO | None = None,
    logger_names: Sequence[str] = LOGGER_NAMES,
) -> Redactor:
    """Send the service's logs to `stream` (stderr by default), redacted; return the redactor.

    Call `add_secret` on the returned redactor when a secret rotates. Calling again replaces the handler
    (idempotent). The loggers stop propagating to the root logger, so a root handler set up by a library
    cannot print a second, differently formatted copy of each line.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    redactor = Redactor(secrets)
    handler = _OpsHandler(stream)
    handler.addFilter(RedactingFilter(redactor))
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    for name in logger_names:
        _install(logging.getLogger(name), handler, numeric)
    return redactor


def _install(logger: logging.Logger, handler: logging.Handler, level: int) -> None:
    for old in [h for h in logger.handlers if isinstance(h, _OpsHandler)]:
        logger.removeHandler(old)
        old.close()
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
