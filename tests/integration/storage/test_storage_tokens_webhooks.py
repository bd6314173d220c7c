"""The HTTP API's tables on every engine: tokens found by hash and revoked, webhook messages recorded once,
claimed under a lease, retried and settled, and a request's timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bouncer_queue.domain import BatchState
from bouncer_queue.storage.records import EmailRow, RequestInfo
from bouncer_queue.storage.repository import Repository


async def test_tokens_are_found_by_hash_listed_without_it_and_revoked(repo: Repository) -> None:
    made = await repo.add_token("ci", "a" * 64, "bq_abcdefg", ["read", "submit"])
    assert made.scopes == ("read", "submit") and made.last_used_at is None
    found = await repo.find_token("a" * 64)
    assert found is not None and found.id == made.id
    assert (await repo.list_tokens())[0].last_used_at is not None  # the use was noted
    assert await repo.find_token("b" * 64) is None
    assert await repo.revoke_token("ci") == 1
    assert await repo.find_token("a" * 64) is None
    assert await repo.revoke_token(str(made.id)) == 0  # already revoked
    assert (await repo.list_tokens())[0].revoked_at is not None


async def _request(repo: Repository, request_id: str, webhook: str | None) -> int:
    info = RequestInfo(request_id=request_id, user_id="u", webhook_url=webhook)
    [batch_id] = await repo.ingest_request(info, [[EmailRow("a@example.com", row_number=1)]])
    return batch_id


async def test_webhook_messages_are_recorded_once_claimed_retried_and_delivered(repo: Repository) -> None:
    await _request(repo, "with-hook", "https://hooks.example/x")
    await _request(repo, "without-hook", None)
    assert await repo.requests_awaiting_webhook() == ["with-hook"]

    assert await repo.add_webhook_delivery("msg_with-hook", "with-hook", "request.finished", "https://h/x", {"a": 1})
    assert not await repo.add_webhook_delivery("msg_with-hook", "with-hook", "request.finished", "https://h/x", {})
    assert await repo.requests_awaiting_webhook() == []

    lease = timedelta(minutes=5)
    [claimed] = await repo.claim_due_webhooks(lease)
    assert claimed.status == "sending" and claimed.payload == {"a": 1}
    assert await repo.claim_due_webhooks(lease) == []  # leased to the first caller

    retry_at = datetime.now(UTC) - timedelta(seconds=1)
    await repo.record_webhook_attempt(claimed.id, delivered=False, status_code=500, error="boom", retry_at=retry_at)
    [again] = await repo.claim_due_webhooks(lease)
    assert again.attempts == 1 and again.last_status_code == 500
    await repo.record_webhook_attempt(again.id, delivered=True, status_code=204, error=None, retry_at=None)
    [log] = await repo.list_webhook_deliveries("with-hook")
    assert (log.status, log.attempts, log.delivered_at is not None) == ("delivered", 2, True)


async def test_a_request_timeline_sums_credits_and_spans_its_batches(repo: Repository) -> None:
    batch_id = await _request(repo, "timed", None)
    empty = await repo.request_timeline("timed")
    assert (empty.credits_used, empty.started_at, empty.last_finished_at) == (0, None, None)
    await repo.try_claim_submission(batch_id, 5)
    await repo.record_batch_submitted(batch_id, "bb-1", 1, 0, BatchState.QUEUED)
    await repo.record_batch_completed(batch_id, 1)
    timeline = await repo.request_timeline("timed")
    assert timeline.credits_used == 1 and timeline.started_at is not None
    assert [b.id for b in await repo.request_batches("timed")] == [batch_id]
