"""The webhook delivery log (Bouncer_Webhook_Deliveries), and the requests still owed a webhook message.

pipeline/webhooks.py asks which requests with a webhook URL have no message yet, adds one when such a request is
done, claims due messages (a lease, so a crashed sender's message is picked up again) and records each attempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, exists, insert, select, update

from bouncer_queue.domain import RequestState
from bouncer_queue.storage.records import WebhookDelivery
from bouncer_queue.storage.tables import RequestModel, WebhookDeliveryModel, utcnow
from bouncer_queue.storage.transactions import Queries, translated

_T = WebhookDeliveryModel


class WebhookQueries(Queries):
    """Writes and reads of Bouncer_Webhook_Deliveries."""

    @translated("find requests owed a webhook")
    async def requests_awaiting_webhook(self, limit: int = 100, offset: int = 0) -> list[str]:
        sent = exists().where(_T.request_id == RequestModel.request_id)
        query = (
            select(RequestModel.request_id)
            .where(RequestModel.webhook_url.is_not(None), RequestModel.status != RequestState.CANCELLED.value, ~sent)
            .order_by(RequestModel.created_at, RequestModel.request_id)
            .limit(limit)
            .offset(offset)
        )
        async with self._db.read() as conn:
            return list((await conn.scalars(query)).all())

    @translated("add a webhook message")
    async def add_webhook_delivery(
        self, message_id: str, request_id: str, event: str, url: str, payload: Mapping[str, Any]
    ) -> bool:
        """Record a message due now; False when a message with this id exists already."""
        now = utcnow()
        values = {"message_id": message_id, "request_id": request_id, "event": event, "url": url}
        async with self._db.write() as conn:
            if await conn.scalar(select(_T.id).where(_T.message_id == message_id)) is not None:
                return False
            extra = {"status": "pending", "attempts": 0, "created_at": now, "next_attempt_at": now}
            await conn.execute(insert(_T).values(**values, payload=dict(payload), **extra))
        return True

    @translated("claim due webhook messages")
    async def claim_due_webhooks(self, lease: timedelta, limit: int = 20) -> list[WebhookDelivery]:
        """Messages due for an attempt, each leased (status sending) to the caller until `lease` has passed."""
        now = utcnow()
        due = select(_T.id).where(_T.status.in_(("pending", "sending")), _T.next_attempt_at <= now).limit(limit)
        claimed: list[WebhookDelivery] = []
        async with self._db.write() as conn:
            for delivery_id in (await conn.scalars(due)).all():
                taken = update(_T).where(_T.id == delivery_id, _T.next_attempt_at <= now)
                result = await conn.execute(taken.values(status="sending", next_attempt_at=now + lease))
                if result.rowcount == 1:
                    row = (await conn.execute(select(_T.__table__).where(_T.id == delivery_id))).one()
                    claimed.append(_delivery(row))
        return claimed

    @translated("record a webhook attempt")
    async def record_webhook_attempt(
        self,
        delivery_id: int,
        *,
        delivered: bool,
        status_code: int | None,
        error: str | None,
        retry_at: datetime | None,
    ) -> None:
        """Delivered; or not, and then pending until `retry_at`, or failed for good when it is None."""
        values: dict[str, Any] = {"attempts": _T.attempts + 1, "last_status_code": status_code, "last_error": error}
        if delivered:
            values.update(status="delivered", delivered_at=utcnow())
        elif retry_at is None:
            values.update(status="failed")
        else:
            values.update(status="pending", next_attempt_at=retry_at.replace(tzinfo=None))
        async with self._db.write() as conn:
            await conn.execute(update(_T).where(_T.id == delivery_id).values(**values))

    @translated("list webhook messages")
    async def list_webhook_deliveries(self, request_id: str | None = None, limit: int = 100) -> list[WebhookDelivery]:
        query = select(_T.__table__).order_by(_T.id.desc()).limit(limit)
        if request_id is not None:
            query = query.where(_T.request_id == request_id)
        async with self._db.read() as conn:
            return [_delivery(row) for row in (await conn.execute(query)).all()]


def _delivery(row: Row[Any]) -> WebhookDelivery:
    return WebhookDelivery(
        id=row.id,
        message_id=row.message_id,
        request_id=row.request_id,
        event=row.event,
        url=row.url,
        payload=row.payload,
        status=row.status,
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
    )
