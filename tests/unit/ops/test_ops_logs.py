"""Structured logging: formats, secret redaction everywhere a secret can hide, DEBUG switches, idempotence."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bouncer_queue.ops.logs import LOGGER_NAMES, configure_logging, level_from_env
from bouncer_queue.ops.redact import Redactor

API_KEY = "sk_live_9f8e7d6c5b4a"
DB_URL = "postgresql+asyncpg://verifier:s3cr3t-pass@db.internal:5432/bouncer"


@pytest.fixture(autouse=True)
def restore_loggers() -> Iterator[None]:
    """configure_logging changes process-wide loggers; put them back so other tests keep caplog working."""
    saved = {}
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            handler.close()
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def log() -> logging.Logger:
    return logging.getLogger("bouncer_queue.pipeline.submit")


def _json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class TestTextFormat:
    def test_line_has_time_level_logger_message_then_extra_fields(self, stream: io.StringIO, log: logging.Logger):
        configure_logging("INFO", json=False, stream=stream)

        log.info("batch submitted", extra={"action": "batch_submitted", "request_id": "r-1", "batch_id": 42})

        time, level, logger, *rest = stream.getvalue().strip().split(" ")
        assert time.endswith("Z") and "T" in time
        assert (level, logger) == ("INFO", "bouncer_queue.pipeline.submit")
        assert rest == ["batch", "submitted", "action=batch_submitted", "request_id=r-1", "batch_id=42"]

    def test_values_with_spaces_are_quoted(self, stream: io.StringIO, log: logging.Logger):
        configure_logging("INFO", json=False, stream=stream)

        log.info("x", extra={"note": "two words", "counts": {"a": 1}})

        assert stream.getvalue().rstrip().endswith('note="two words" counts={"a":1}')

    def test_below_level_is_dropped(self, stream: io.StringIO, log: logging.Logger):
        configure_logging("INFO", json=False, stream=stream)

        log.debug("hidden")

        assert stream.getvalue() == ""


class TestJsonFormat:
    def test_each_line_is_one_json_object_with_extra_keys(self, stream: io.StringIO, log: logging.Logger):
        configure_logging("INFO", json=True, stream=stream)

        log.info("batch %s submitted", "b-1", extra={"action": "batch_submitted", "batch_id": 42})
        log.warning("second")

        first, second = _json_lines(stream)
        assert first["message"] == "batch b-1 submitted"
        assert first["level"] == "INFO"
        assert first["logger"] == "bouncer_queue.pipeline.submit"
        assert (first["action"], first["batch_id"]) == ("batch_submitted", 42)
        assert second["level"] == "WARNING"

    def test_exception_lands_in_exc_info(self, stream: io.StringIO, log: logging.Logger):
        configure_logging("INFO", json=True, stream=stream)

        try:
            raise ValueError("broken")
        except ValueError:
            log.exception("failed")

        (line,) = _json_lines(stream)
        assert "Traceback" in str(line["exc_info"])
        assert "ValueError: broken" in str(line["exc_info"])

    def test_extra_cannot_overwrite_base_keys(self, stream: io.StringIO, log: logging.Logger):
        configure_logging("INFO", json=True, stream=stream)

        log.info("real", extra={"level": "fake", "logger": "fake"})

        (line,) = _json_lines(stream)
        assert (line["level"], line["logger"]) == ("INFO", "bouncer_queue.pipeline.submit")


class TestRedactionOfKnownSecrets:
    @pytest.mark.parametrize("json_output", [False, True])
    def test_secret_in_message_and_args(self, stream: io.StringIO, log: logging.Logger, json_output: bool):
        configure_logging("INFO", json=json_output, secrets=[API_KEY], stream=stream)

        log.info(f"key is {API_KEY}")
        log.info("key is %s and %r", API_KEY, {"k": API_KEY})

        assert API_KEY not in stream.getvalue()
        assert stream.getvalue().count("***") == 3

    @pytest.mark.parametrize("json_output", [False, True])
    def test_secret_in_extra_values(self, stream: io.StringIO, log: logging.Logger, json_output: bool):
        configure_logging("INFO", json=json_output, secrets=[API_KEY], stream=stream)

        log.info("call", extra={"action": "call", "headers": {"x": API_KEY}, "key": API_KEY, "n": 3})

        assert API_KEY not in stream.getvalue()
        if json_output:
            (line,) = _json_lines(stream)
            assert line["headers"] == {"x": "***"}
            assert (line["key"], line["n"]) == ("***", 3)

    @pytest.mark.parametrize("json_output", [False, True])
    def test_secret_in_exception_traceback(self, stream: io.StringIO, log: logging.Logger, json_output: bool):
        configure_logging("INFO", json=json_output, secrets=[DB_URL], stream=stream)

        try:
            raise ConnectionError(f"cannot connect to {DB_URL}")
        except ConnectionError:
            log.exception("database down")

        output = stream.getvalue()
        assert "ConnectionError: cannot connect to ***" in output
        assert "s3cr3t-pass" not in output

    def test_password_of_a_known_url_is_redacted_on_its_own(self, stream: io.StringIO, log: logging.Logger):
        configure_logging("INFO", json=False, secrets=[DB_URL], stream=stream)

        log.info("password authentication failed (tried s3cr3t-pass)")

        assert "s3cr3t-pass" not in stream.getvalue()

    def test_url_quoted_form_of_a_secret_is_redacted(self, stream: io.StringIO, log: logging.Logger):
        configure_logging("INFO", json=False, secrets=["p@ss word/1"], stream=stream)

        log.info("built redis://:p%40ss%20word%2F1@cache:6379/0")

        assert "p%40ss" not in stream.getvalue()

    def test_rotated_key_is_redacted_after_add_secret(self, stream: io.StringIO, log: logging.Logger):
        redactor = configure_logging("INFO", json=True, secrets=[API_KEY], stream=stream)
        new_key = "sk_live_rotated_0001"

        redactor.add_secret(new_key)
        log.info("old %s new %s", API_KEY, new_key)

        (line,) = _json_lines(stream)
        assert line["message"] == "old *** new ***"

    def test_other_handlers_see_the_redacted_record(self, log: logging.Logger):
        """The filter masks the record itself, so a second handler cannot leak what ours hid."""
        configure_logging("INFO", json=False, secrets=[API_KEY], stream=io.StringIO())
        seen: list[str] = []

        class Capture(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                seen.append(record.getMessage())

        logging.getLogger("bouncer_queue").addHandler(Capture())
        log.info("key %s", API_KEY)

        assert seen == ["key ***"]


class TestGenericPatterns:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("redis://:hunter22@cache:6379/0", "redis://:***@cache:6379/0"),
            ("amqp://user:pa55w0rd@mq/vhost", "amqp://user:***@mq/vhost"),
            ("postgresql://bob:x@db/app", "postgresql://bob:***@db/app"),
            ("x-api-key: abc123xyz", "x-api-key: ***"),
            ("headers={'x-api-key': 'abc123xyz'}", "headers={'x-api-key': '***'}"),
            ("api_key=abc123xyz&limit=5", "api_key=***&limit=5"),
            ("BOUNCER_API_KEY=abc123xyz", "BOUNCER_API_KEY=***"),
            ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
            ('{"authorization": "Bearer eyJhbGciOi"}', '{"authorization": "Bearer ***"}'),
            ("redis_password=hunter22 host=x", "redis_password=*** host=x"),
        ],
    )
    def test_secret_shapes_are_masked_without_knowing_the_value(self, text: str, expected: str):
        assert Redactor().redact(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "https://api.usebouncer.com/v1.1/email/verify?email=jane@example.com",
            "redis://cache:6379/0",
            "3 passwords rotated",
            "password authentication failed for user bob",
        ],
    )
    def test_ordinary_text_is_left_alone(self, text: str):
        assert Redactor().redact(text) == text

    def test_short_secret_values_are_ignored(self):
        """A 2-character secret would mask ordinary text everywhere."""
        assert Redactor(["ab"]).redact("about tabs") == "about tabs"


class TestConfigure:
    def test_calling_twice_keeps_one_handler_per_logger(self, stream: io.StringIO, log: logging.Logger):
        configure_logging("INFO", json=False, stream=io.StringIO())
        configure_logging("INFO", json=True, stream=stream)

        log.info("once")

        for name in LOGGER_NAMES:  # other tests' capture handlers may sit beside ours; count our own only
            handlers = logging.getLogger(name).handlers
            assert len([h for h in handlers if type(h).__name__ == "_OpsHandler"]) == 1
        assert len(_json_lines(stream)) == 1

    def test_keeps_handlers_it_did_not_install(self):
        other = logging.NullHandler()
        logging.getLogger("bouncer_queue").addHandler(other)

        configure_logging("INFO", json=False, stream=io.StringIO())
        configure_logging("INFO", json=False, stream=io.StringIO())

        assert other in logging.getLogger("bouncer_queue").handlers

    def test_bullmq_logger_is_configured_too(self, stream: io.StringIO):
        configure_logging("DEBUG", json=True, secrets=[API_KEY], stream=stream)

        logging.getLogger("bullmq.worker").debug("fetched with %s", API_KEY)

        (line,) = _json_lines(stream)
        assert (line["logger"], line["message"]) == ("bullmq.worker", "fetched with ***")

    def test_debug_level_enables_debug_records(self, stream: io.StringIO, log: logging.Logger):
        configure_logging("debug", json=False, stream=stream)

        log.debug("visible")

        assert "DEBUG bouncer_queue.pipeline.submit visible" in stream.getvalue()

    def test_unknown_level_is_rejected(self):
        with pytest.raises(ValueError, match="unknown log level"):
            configure_logging("LOUD", json=False)


class TestLevelFromEnv:
    @pytest.mark.parametrize("value", ["bull*", "bullmq:*", "bouncer*", "express,bull*", "BULL", "*"])
    def test_debug_namespaces_switch_on_debug(self, value: str):
        assert level_from_env("INFO", {"DEBUG": value}) == "DEBUG"

    @pytest.mark.parametrize("value", ["", "express:*", "-bull*", "1"])
    def test_other_values_keep_the_default(self, value: str):
        assert level_from_env("WARNING", {"DEBUG": value}) == "WARNING"

    def test_missing_variable_keeps_the_default(self):
        assert level_from_env("INFO", {}) == "INFO"

    def test_reads_the_process_environment_by_default(self, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.setenv("DEBUG", "bull*")

        assert level_from_env("INFO") == "DEBUG"


def test_without_a_stream_the_logs_follow_stderr_even_after_a_stand_in_is_closed(
    log: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_in = io.StringIO()
    monkeypatch.setattr("sys.stderr", stand_in)
    configure_logging("INFO", json=False)
    log.info("while captured")
    stand_in.close()  # as a CLI runner does with its capture once the command returns
    later = io.StringIO()
    monkeypatch.setattr("sys.stderr", later)

    log.info("after the capture")

    assert "after the capture" in later.getvalue()
    assert "Logging error" not in later.getvalue()
