"""Wire models tolerate unknown fields and values, find `provider` in either place, and keep the raw object."""

from __future__ import annotations

import json

import pytest

from bouncer_queue.bouncer import BatchInfo, VerificationResult
from bouncer_queue.bouncer.schemas import result_rows


def test_batch_info_from_the_docs_example() -> None:
    info = BatchInfo.model_validate(
        {"batchId": "65f1c0de9a3b4e0012ab34cd", "created": "2024-05-02T09:14:03.512Z",
         "started": "2024-05-02T09:14:05.020Z", "completed": "2024-05-02T09:14:19.871Z",
         "status": "completed", "quantity": 2, "duplicates": 0, "credits": 2, "processed": 2,
         "stats": {"deliverable": 1, "risky": 0, "undeliverable": 1, "unknown": 0}, "newField": True}
    )  # fmt: skip
    assert info.batch_id == "65f1c0de9a3b4e0012ab34cd" and info.credits == 2
    assert info.completed is not None and info.completed.microsecond == 871_000
    assert BatchInfo.model_validate({"batchId": "x", "status": "pending"}).status == "pending"


def test_result_tolerates_unknown_values_and_keeps_raw() -> None:
    raw = {
        "email": "a@example.org", "status": "greylisted", "reason": "brand_new", "name": "crm-1",
        "domain": {"name": "example.org", "acceptAll": "maybe", "disposable": "no", "free": "no", "age": 3},
        "account": {"role": "no", "disabled": "no", "fullMailbox": "no"},
        "dns": {"type": "MX", "record": "mx.example.org.", "provider": "google.com"},
        "score": 62, "toxic": "unknown", "toxicity": 1, "retryAfter": "2024-05-02T09:24:03.512Z", "didYouMean": "x",
    }  # fmt: skip
    result = VerificationResult.model_validate(raw)
    assert (result.status, result.domain and result.domain.accept_all) == ("greylisted", "maybe")
    assert result.provider == "google.com" and result.retry_after == "2024-05-02T09:24:03.512Z"
    assert result.raw == raw


def test_top_level_provider_wins_and_minimal_result() -> None:
    top = VerificationResult.model_validate({"email": "a@b.co", "status": "deliverable", "provider": "b.co"})
    assert top.provider == "b.co"
    bare = VerificationResult.model_validate({"email": "a@b.co", "status": "unknown", "reason": "timeout"})
    assert (
        bare.provider is None
        and bare.score is None
        and bare.raw
        == {
            "email": "a@b.co",
            "status": "unknown",
            "reason": "timeout",
        }
    )


DOWNLOADED = {
    "email": "a@example.org", "status": "greylisted", "reason": "brand_new", "newFlag": True, "score": 62,
    "domain": {"name": "example.org", "acceptAll": "maybe", "disposable": "no", "free": "no"},
    "account": {"role": "no", "disabled": "no", "fullMailbox": "no"},
    "dns": {"type": "MX", "record": "mx.example.org.", "provider": "google.com"},
}  # fmt: skip


def test_a_download_is_flattened_in_one_pass_keeping_the_object_bouncer_sent() -> None:
    text = json.dumps([DOWNLOADED], indent=1)
    [row] = result_rows(text)
    assert row.raw is None and row.raw_object() == DOWNLOADED  # the decoded object is not kept
    assert row.raw_json in text  # the text as sent, not encoded again
    assert (row.email, row.status, row.reason, row.score) == ("a@example.org", "greylisted", "brand_new", 62)
    assert (row.domain, row.accept_all, row.full_mailbox, row.provider) == ("example.org", "maybe", "no", "google.com")
    assert result_rows(" [ ] ") == []
    assert [r.email for r in result_rows('[{"email":"a@x","status":"ok"} , {"email":"b@x","status":"ok"}]')] == [
        "a@x",
        "b@x",
    ]


@pytest.mark.parametrize(
    "body",
    [{"email": "a@x"}, [{"email": 7, "status": "ok"}], [{"email": "a@x", "status": "ok", "score": "high"}],
     [{"email": "a@x", "status": "ok", "domain": "x.org"}], [{"email": "a@x", "status": "ok", "reason": 3}],
     [{"email": "a@x", "status": "ok", "toxicity": True}]],
)  # fmt: skip
def test_a_download_that_breaks_the_wire_types_is_refused(body: object) -> None:
    with pytest.raises(ValueError):
        result_rows(json.dumps(body))


@pytest.mark.parametrize(
    "text", ["", "[", '[{"email":"a@x","status":"ok"}', '[{"email":"a@x","status":"ok"}] x', "[,]"]
)
def test_a_download_that_is_not_one_json_array_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        result_rows(text)
