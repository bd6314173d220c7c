"""After the pipeline: telling a request's webhook URL that the request finished (or failed), signed.

A request "finishes" when every address has an outcome (completed, failed or dead); it "fails" when none got a
result. The workers run `WebhookSender.run` beside the queues: every WEBHOOK_INTERVAL_SECONDS it looks at the
requests that have a webhook URL and no message yet, records a message for each one that is done (one per
request: its id is derived from the request, so two workers cannot send two), then POSTs the messages that are
due. Messages are signed as Standard Webhooks specifies (`webhook-id`, `webhook-timestamp`,
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, secret WEBHOOK_SECRET `whsec_<base64>`).
A failed attempt (no answer, or not 2xx) is retried after WEBHOOK_BACKOFF_SECONDS, doubling each time, until
WEBHOOK_MAX_ATTEMPTS; every attempt is recorded in Bouncer_Webhook_Deliveries. Targets on loopback, private or
link-local addresses are refused (at submission and again before each attempt) unless WEBHOOK_ALLOW_PRIVATE.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from bouncer_queue.errors import InputError
from bouncer_queue.storage.records import WebhookDelivery
from bouncer_queue.storage.repository import Repository
from bouncer_queue.tracking import RequestStatus, status_of

log = logging.getLogger(__name__)

EVENT_FINISHED = "request.finished"
EVENT_FAILED = "request.failed"
SECRET_PREFIX = "whsec_"


def signing_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (InputError when it is not one)."""
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        raise InputError(
            "WEBHOOK_SECRET must be whsec_ followed by base64, e.g. whsec_$(openssl rand -base64 32)"
        ) from None


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for this message."""
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse a webhook URL that is not http(s), or whose host resolves to a loopback/private address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"webhook URL must be an http:// or https:// URL with a host, not {url[:200]!r}")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise InputError(f"webhook host {parts.hostname!r} does not resolve: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise InputError(
                f"webhook host {parts.hostname!r} resolves to {address}, a non-public address; "
                "set WEBHOOK_ALLOW_PRIVATE=true to allow it"
            )


def event_of(status: RequestStatus) -> str:
    completed = status.progress.emails_by_state.get("completed", 0)
    return EVENT_FINISHED if completed else EVENT_FAILED


def payload_of(status: RequestStatus, event: str) -> dict[str, Any]:
    """The message body: the event and what a receiver needs to fetch the results."""
    request = status.request
    finished = status.finished_at
    return {
        "type": event,
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {
            "request_id": request.request_id,
            "user_id": request.user_id,
            "status": status.state,
            "total_emails": status.progress.emails_total,
            "emails_by_state": dict(status.progress.emails_by_state),
            "batches_by_state": dict(status.progress.batches_by_state),
            "credits_used": status.timeline.credits_used,
            "finished_at": finished.isoformat() if finished else None,
            "results_url": f"/api/v1/requests/{request.request_id}/results",
        },
    }


@dataclass
class WebhookPolicy:
    """The webhook settings the sender obeys."""

    secret: str
    allow_private: bool = False
    max_attempts: int = 8
    backoff_seconds: float = 5.0
    interval_seconds: float = 5.0

    def retry_at(self, attempts_made: int) -> datetime | None:
        """When to try again after `attempts_made` attempts; None once they are used up."""
        if attempts_made >= self.max_attempts:
            return None
        return datetime.now(UTC) + timedelta(seconds=self.backoff_seconds * 2 ** (attempts_made - 1))


class WebhookSender:
    """Finds finished requests, records their messages, and delivers due messages over `http`."""

    def __init__(self, repo: Repository, http: httpx.AsyncClient, policy: WebhookPolicy) -> None:
        self.repo, self.http, self.policy = repo, http, policy
        self._key = signing_key(policy.secret)

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep and deliver every interval until `stop`; a failed round is logged and the next one tries again."""
        while not stop.is_set():
            try:
                await self.sweep()
                await self.deliver_due()
            except Exception as exc:  # the database away: next round
                log.warning("webhook round failed: %s", exc, extra={"action": "webhook_round_failed"})
            try:
                await asyncio.wait_for(stop.wait(), self.policy.interval_seconds)
            except TimeoutError:
                pass

    async def sweep(self) -> int:
        """Record a message for each request that is done and owed one; how many were recorded."""
        recorded = 0
        for request_id in await self._awaiting():
            status = await self._status(request_id)
            if status is None or not status.done or status.request.webhook_url is None:
                continue
            event = event_of(status)
            message_id = f"msg_{request_id}"
            url = status.request.webhook_url
            recorded += await self.repo.add_webhook_delivery(
                message_id, request_id, event, url, payload_of(status, event)
            )
        return recorded

    async def _awaiting(self, page: int = 200) -> list[str]:
        """Every request owed a message, page by page, so many unfinished ones cannot hide a finished one."""
        found: list[str] = []
        while len(batch := await self.repo.requests_awaiting_webhook(page, len(found))) == page:
            found += batch
        return found + batch

    async def deliver_due(self) -> int:
        """Attempt every due message once; how many were delivered."""
        lease = timedelta(seconds=self.policy.interval_seconds * 4 + 60)
        delivered = 0
        for delivery in await self.repo.claim_due_webhooks(lease):
            delivered += await self._attempt(delivery)
        return delivered

    async def _status(self, request_id: str) -> RequestStatus | None:
        request = await self.repo.get_request(request_id)
        if request is None:
            return None
        progress = await self.repo.request_progress(request_id)
        return status_of(request, progress, await self.repo.request_timeline(request_id))

    async def _attempt(self, delivery: WebhookDelivery) -> bool:
        code, error = await self._post(delivery)
        ok = code is not None and 200 <= code < 300
        retry_at = None if ok else self.policy.retry_at(delivery.attempts + 1)
        await self.repo.record_webhook_attempt(
            delivery.id, delivered=ok, status_code=code, error=error, retry_at=retry_at
        )
        outcome = "delivered" if ok else ("will retry" if retry_at else "given up")
        log.info(
            "webhook %s for request %s: %s",
            delivery.event,
            delivery.request_id,
            outcome,
            extra={"action": "webhook_attempt", "request_id": delivery.request_id, "status_code": code, "ok": ok},
        )
        return ok

    async def _post(self, delivery: WebhookDelivery) -> tuple[int | None, str | None]:
        try:
            await asyncio.to_thread(check_target, delivery.url, allow_private=self.policy.allow_private)
            response = await self.http.post(
                delivery.url, content=body_of(delivery.payload), headers=self.headers(delivery)
            )
        except InputError as exc:
            return None, str(exc)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
        return response.status_code, None if response.is_success else response.text[:500]

    def headers(self, delivery: WebhookDelivery) -> dict[str, str]:
        timestamp = int(time.time())
        return {
            "content-type": "application/json",
            "webhook-id": delivery.message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, delivery.message_id, timestamp, body_of(delivery.payload)),
        }


def body_of(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes sent (and signed)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
