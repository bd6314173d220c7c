"""Webhooks end to end: a request handed in with a webhook URL ends in a POST to it, signed as Standard Webhooks
specify (checked with the `standardwebhooks` package, an implementation independent of ours), retried after a
receiver that fails, and recorded in the delivery log."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from http_support import WEBHOOK_SECRET, HttpStack
from ops_support import eventually
from pipeline_support import make_emails
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


class Receiver:
    """An HTTP endpoint that answers 500 to its first `failures` POSTs and 204 after; it keeps every POST."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.posts: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                code = 500 if len(receiver.posts) < receiver.failures else 204
                receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body, code))
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/bouncer"

    def delivered(self) -> list[tuple[dict[str, str], bytes, int]]:
        return [post for post in self.posts if post[2] == 204]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    built = Receiver(failures=2)
    thread = threading.Thread(target=built.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield built
    finally:
        built.server.shutdown()
        built.server.server_close()


def test_a_finished_request_is_announced_signed_and_retried_until_the_receiver_accepts(
    http: HttpStack, receiver: Receiver
) -> None:
    with http.client("submit") as api:
        answer = api.post("/requests", json={"emails": make_emails(30, "hook"), "webhook_url": receiver.url})
    assert answer.status_code == 202, answer.text
    request_id = answer.json()["request_id"]

    [(headers, body, _)] = eventually(receiver.delivered, timeout=90)

    message = Webhook(WEBHOOK_SECRET).verify(body, headers)
    assert message["type"] == "request.finished"
    assert message["data"]["request_id"] == request_id and message["data"]["total_emails"] == 30
    assert message["data"]["emails_by_state"] == {"completed": 30}
    assert message["data"]["results_url"] == f"/api/v1/requests/{request_id}/results"
    # Three attempts of one message: two answered 500, then the one accepted; the same id each time.
    assert [code for _, _, code in receiver.posts] == [500, 500, 204]
    assert {h["webhook-id"] for h, _, _ in receiver.posts} == {f"msg_{request_id}"}
    with pytest.raises(WebhookVerificationError):
        Webhook(WEBHOOK_SECRET).verify(body.replace(b"30", b"31"), headers)

    [log] = http.sql(
        'SELECT status, attempts, last_status_code, event FROM "Bouncer_Webhook_Deliveries" WHERE request_id = :r',
        r=request_id,
    )
    assert (log.status, log.attempts, log.last_status_code, log.event) == ("delivered", 3, 204, "request.finished")
    assert json.loads(body)["data"]["status"] == "finished"


def test_a_webhook_url_that_is_not_http_is_refused(http: HttpStack) -> None:
    with http.client("submit") as api:
        answer = api.post("/requests", json={"emails": ["a@example.com"], "webhook_url": "file:///etc/passwd"})
    assert answer.status_code == 422 and "http" in answer.json()["detail"]
