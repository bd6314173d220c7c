"""Webhook signing, target checks and retry timing, without sockets (a target is an IP literal, so no DNS)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from bouncer_queue.errors import InputError
from bouncer_queue.pipeline.webhooks import WebhookPolicy, check_target, sign, signing_key

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_our_signature_is_the_one_the_standard_webhooks_library_makes() -> None:
    body = b'{"type":"request.finished"}'
    stamp = datetime(2026, 11, 30, tzinfo=UTC)
    theirs = Webhook(SECRET).sign("msg_1", stamp, body.decode())
    assert sign(signing_key(SECRET), "msg_1", int(stamp.timestamp()), body) == theirs


def test_a_secret_that_is_not_base64_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="whsec_"):
        signing_key("whsec_not base64!")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.5/",
        "http://169.254.169.254/latest",
        "http://[::1]/",
    ],
)
def test_loopback_private_and_link_local_targets_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(InputError, match="WEBHOOK_ALLOW_PRIVATE"):
        check_target(url, allow_private=False)
    check_target(url, allow_private=True)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "http:///nohost", "example.com/hook"])
def test_only_http_urls_with_a_host_are_targets(url: str) -> None:
    with pytest.raises(InputError, match="http"):
        check_target(url, allow_private=True)


def test_a_public_address_is_a_target() -> None:
    check_target("https://93.184.216.34/hook", allow_private=False)


def test_retries_back_off_doubling_until_the_attempts_are_used_up() -> None:
    policy = WebhookPolicy(secret=SECRET, max_attempts=4, backoff_seconds=10)
    now = datetime.now(UTC)
    waits = [(at - now).total_seconds() for n in (1, 2, 3) if (at := policy.retry_at(n)) is not None]
    assert [round(w, -1) for w in waits] == [10, 20, 40]
    assert policy.retry_at(4) is None
    assert policy.retry_at(1) - now < timedelta(seconds=11)  # type: ignore[operator]
