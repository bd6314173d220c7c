"""ApiKeySource hands out the key in force, feeds every new key to the redactor, and reloads on demand;
`verify` logs at WARNING unless LOG_LEVEL (or --debug) says otherwise."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bouncer_queue.config import Settings
from bouncer_queue.interfaces.common import setup_logging
from bouncer_queue.ops.keys import ApiKeySource
from bouncer_queue.ops.redact import Redactor


def test_a_rotated_key_file_is_used_and_redacted(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("first-key-1234\n", encoding="utf-8")
    redactor = Redactor()
    source = ApiKeySource(Settings(bouncer_api_key_file=key_file), on_new_key=redactor.add_secret)
    assert source() is not None and source().get_secret_value() == "first-key-1234"  # type: ignore[union-attr]
    key_file.write_text("second-key-5678\n", encoding="utf-8")
    assert source.reload() is True
    assert redactor.redact("first-key-1234 second-key-5678") == "*** ***"
    assert source.reload() is False


def test_reload_reads_the_configured_key_again() -> None:
    fresh = Settings(bouncer_api_key="new-key-0000")
    source = ApiKeySource(Settings(bouncer_api_key="old-key-0000"), load_settings=lambda: fresh)
    source()
    assert source.reload() is True
    assert source().get_secret_value() == "new-key-0000"  # type: ignore[union-attr]


def test_a_missing_key_file_keeps_the_process_running(tmp_path: Path) -> None:
    source = ApiKeySource(Settings(bouncer_api_key_file=tmp_path / "absent"))
    assert source.reload() is False


@pytest.fixture
def package_logger() -> Iterator[logging.Logger]:
    """The package loggers, put back as they were afterwards (setup_logging replaces their handler)."""
    loggers = [logging.getLogger(name) for name in ("bouncer_queue", "bullmq")]
    saved = [(lg.level, lg.propagate, list(lg.handlers)) for lg in loggers]
    yield loggers[0]
    for lg, (level, propagate, handlers) in zip(loggers, saved, strict=True):
        lg.setLevel(level)
        lg.propagate = propagate
        lg.handlers[:] = handlers


def test_quiet_commands_log_warnings_unless_log_level_is_set(
    monkeypatch: pytest.MonkeyPatch, package_logger: logging.Logger
) -> None:
    logger = package_logger
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    monkeypatch.delenv("DEBUG", raising=False)
    setup_logging(Settings(), quiet=True)
    assert logger.level == logging.WARNING
    monkeypatch.setenv("LOG_LEVEL", "INFO")
    setup_logging(Settings(), quiet=True)
    assert logger.level == logging.INFO
    setup_logging(Settings(), quiet=False)
    assert logger.level == logging.INFO
