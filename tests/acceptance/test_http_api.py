"""The HTTP API end to end: `bouncer-queue serve` and `bouncer-queue workers` as processes, the simulator and
PostgreSQL. Every endpoint, every auth case and every error answer is exercised here; results are checked
against what the simulator promises for each address."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import httpx
import pytest
from http_support import MAX_UPLOAD_BYTES, HttpStack
from ops_support import eventually
from pipeline_support import make_emails

from bouncer_queue.simulator.results import expected_result

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
SEED = "bouncer-simulator"


def submit(http: HttpStack, emails: list[Any], **options: Any) -> dict[str, Any]:
    with http.client("submit") as api:
        answer = api.post("/requests", json={"emails": emails, **options})
    assert answer.status_code == 202, answer.text
    return dict(answer.json())


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_openapi_document_and_docs_are_served_without_a_token(http: HttpStack) -> None:
    document = httpx.get(f"{http.url}/api/v1/openapi.json").json()
    paths = set(document["paths"])
    assert {"/api/v1/requests", "/api/v1/requests/{request_id}", "/api/v1/requests/{request_id}/results"} <= paths
    assert {"/api/v1/queues", "/api/v1/dead-letters", "/api/v1/health"} <= paths
    assert "multipart/form-data" in document["paths"]["/api/v1/requests"]["post"]["requestBody"]["content"]
    assert httpx.get(f"{http.url}/api/v1/docs").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/requests"),
        ("POST", "/requests"),
        ("GET", "/requests/x"),
        ("GET", "/requests/x/results"),
        ("DELETE", "/requests/x"),
        ("GET", "/queues"),
        ("POST", "/queues/email-verification/pause"),
        ("GET", "/dead-letters"),
        ("POST", "/dead-letters/1/replay"),
        ("GET", "/health"),
    ],
)
def test_every_endpoint_answers_401_without_a_token_or_with_a_bad_one(http: HttpStack, method: str, path: str) -> None:
    with http.client(None) as api:
        missing = api.request(method, path)
        bad = api.request(method, path, headers={"Authorization": "Bearer bq_not-a-real-token"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert bad.status_code == 401
    assert "bq_not-a-real-token" not in bad.text


def test_scopes_read_submit_admin_nest_and_a_missing_one_is_403(http: HttpStack) -> None:
    with http.client("read") as reader, http.client("submit") as submitter:
        assert reader.get("/requests").status_code == 200
        assert reader.post("/requests", json={"emails": ["a@example.com"]}).status_code == 403
        assert reader.post("/queues/email-verification/pause").status_code == 403
        assert submitter.get("/queues").status_code == 200  # submit includes read
        assert submitter.post("/queues/email-verification/retry-failed").status_code == 403
        assert submitter.post("/dead-letters/1/replay").status_code == 403
        assert reader.delete("/requests/x").status_code == 403  # cancelling needs `submit`


def test_a_revoked_token_is_refused_at_once_and_never_appears_in_the_logs(http: HttpStack) -> None:
    token = http.cli("tokens", "create", "--name", "short-lived", "--scope", "read").strip().splitlines()[-1]
    with httpx.Client(base_url=f"{http.url}/api/v1", headers={"Authorization": f"Bearer {token}"}) as api:
        assert api.get("/requests").status_code == 200
        http.cli("tokens", "revoke", "short-lived")
        assert api.get("/requests").status_code == 401
    listed = json.loads(http.cli("tokens", "list", "--json"))
    assert {"name": "short-lived", "revoked": True}.items() <= next(
        t for t in listed if t["name"] == "short-lived"
    ).items()
    stored = http.sql('SELECT token_hash, prefix FROM "Bouncer_Api_Tokens"')
    assert all(token != row.token_hash for row in stored) and token not in http.serve.output()
    assert all(t not in http.serve.output() + http.workers.output() for t in http.tokens.values())


def test_a_json_list_is_verified_followed_and_downloaded_in_every_format(http: HttpStack) -> None:
    emails = make_emails(45, "json")
    accepted = submit(http, emails, userId="node-app", priority="HIGH")
    assert accepted["created"] and accepted["total_emails"] == 45 and accepted["batch_count"] == 3
    request_id = accepted["request_id"]

    detail = http.wait_done(request_id)
    assert detail["status"] == "finished" and detail["user_id"] == "node-app" and detail["priority"] == "HIGH"
    assert detail["progress"]["emails_by_state"] == {"completed": 45}
    assert detail["progress"]["batches_by_state"] == {"downloaded": 3}
    assert detail["progress"]["fraction"] == 1.0 and detail["eta"] is None
    assert detail["credits_used"] == 45 and detail["started_at"] and detail["finished_at"]

    with http.client("read") as api:
        as_csv = rows_of(api.get(f"/requests/{request_id}/results").text)
        as_json = api.get(f"/requests/{request_id}/results", params={"format": "json"}).json()
        as_ndjson = api.get(f"/requests/{request_id}/results", params={"format": "ndjson"}).text.splitlines()
        deliverable = rows_of(api.get(f"/requests/{request_id}/results", params={"status": "deliverable"}).text)
        batches = api.get(f"/requests/{request_id}/batches").json()
    assert [(b["status"], b["quantity"]) for b in batches] == [("downloaded", 20)] * 2 + [("downloaded", 5)]
    assert sum(b["credits_used"] for b in batches) == detail["credits_used"]
    assert [(r["email"], r["status"]) for r in as_csv] == [(e, expected_result(e, SEED)["status"]) for e in emails]
    assert [r["email"] for r in as_json] == emails == [json.loads(line)["email"] for line in as_ndjson]
    assert {r["email"] for r in deliverable} == {
        e for e in emails if expected_result(e, SEED)["status"] == "deliverable"
    }


def test_json_objects_keep_their_own_keys_as_columns(http: HttpStack) -> None:
    emails = [{"email": "cols.1@example.com", "name": "Ann", "crm_id": "=7"}, {"email": "cols.2@gmail.com"}]
    request_id = submit(http, emails)["request_id"]
    http.wait_done(request_id)
    with http.client("read") as api:
        rows = rows_of(api.get(f"/requests/{request_id}/results").text)
    assert [(r["email"], r["name"], r["crm_id"]) for r in rows] == [
        ("cols.1@example.com", "Ann", "'=7"),
        ("cols.2@gmail.com", "", ""),
    ]


def test_the_same_idempotency_key_returns_the_same_request(http: HttpStack) -> None:
    first = submit(http, make_emails(3, "idem"), idempotency_key="order-1234")
    with http.client("submit") as api:
        again = api.post("/requests", json={"emails": ["other@example.com"]}, headers={"Idempotency-Key": "order-1234"})
    assert again.status_code == 200
    assert again.json()["request_id"] == first["request_id"] and again.json()["created"] is False
    assert again.headers["location"] == f"/api/v1/requests/{first['request_id']}"
    [(count,)] = http.sql('SELECT COUNT(*) FROM "Bouncer_Requests" WHERE idempotency_key = :k', k="order-1234")
    assert count == 1


def test_an_uploaded_csv_keeps_its_columns_and_formulas_are_neutralized(http: HttpStack) -> None:
    body = "email,name,company\n" + "".join(f'up.{i}@example.com,N{i},=HYPERLINK("x")\n' for i in range(25))
    body += ",Nobody,Acme\n"  # a row without an address is skipped and counted
    with http.client("submit") as api:
        answer = api.post("/requests", files={"file": ("crm.csv", body, "text/csv")}, data={"user_id": "crm"})
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["total_emails"] == 25 and accepted["skipped_rows"] == 1
    http.wait_done(accepted["request_id"])
    with http.client("read") as api:
        rows = rows_of(api.get(accepted["results_url"].removeprefix("/api/v1")).text)
        detail = api.get(f"/requests/{accepted['request_id']}").json()
    assert detail["source"] == "crm.csv"
    assert len(rows) == 26 and list(rows[0])[:3] == ["email", "name", "company"]  # every row, in input order
    assert {r["company"] for r in rows[:25]} == {'\'=HYPERLINK("x")'}
    assert (rows[25]["name"], rows[25]["status"], rows[25]["reason"]) == ("Nobody", "skipped", "no email")


def test_requests_are_listed_newest_first_with_pagination_and_filters(http: HttpStack) -> None:
    ids = [submit(http, [f"page{i}@example.com"], user_id="pager")["request_id"] for i in range(3)]
    with http.client("read") as api:
        first = api.get("/requests", params={"user_id": "pager", "limit": 2}).json()
        second = api.get("/requests", params={"user_id": "pager", "limit": 2, "offset": first["next_offset"]}).json()
        finished = api.get("/requests", params={"status": "cancelled", "user_id": "pager"}).json()
        wrong = api.get("/requests", params={"status": "nonsense"})
    assert [r["request_id"] for r in first["items"] + second["items"]] == ids[::-1]
    assert first["next_offset"] == 2 and second["next_offset"] is None
    assert finished["items"] == [] and wrong.status_code == 422


def test_unknown_ids_are_404(http: HttpStack) -> None:
    with http.client("admin") as api:
        for path in ("/requests/no-such-request", "/requests/no-such-request/results", "/requests/nope/batches"):
            answer = api.get(path)
            assert answer.status_code == 404 and "no request" in answer.json()["detail"]
        assert api.post("/dead-letters/987654/replay").status_code == 404
        assert api.post("/queues/no-such-queue/pause").status_code == 404


def test_bad_bodies_and_uploads_are_refused_with_the_reason(http: HttpStack) -> None:
    before = http.sql('SELECT COUNT(*) FROM "Bouncer_Requests"')[0][0]
    with http.client("submit") as api:
        header_only = api.post("/requests", files={"file": ("h.csv", "email\n", "text/csv")})
        no_column = api.post("/requests", files={"file": ("a.csv", "name,phone\nAnn,1\n", "text/csv")})
        pdf = api.post("/requests", files={"file": ("a.pdf", b"%PDF-1.7", "application/pdf")})
        xlsx = api.post("/requests", files={"file": ("a.xlsx", b"PK\x03\x04", "application/octet-stream")})
        no_file = api.post("/requests", data={"user_id": "x"}, files={"other": ("a.csv", "email\na@b.co\n")})
        plain = api.post("/requests", content="a@example.com", headers={"content-type": "text/plain"})
        empty = api.post("/requests", json={"emails": []})
        broken = api.post("/requests", content="{not json", headers={"content-type": "application/json"})
        priority = api.post("/requests", json={"emails": ["a@example.com"], "priority": "URGENT"})
    assert no_column.status_code == 422 and "a.csv" in no_column.json()["detail"]
    assert "/tmp" not in no_column.json()["detail"]
    assert pdf.status_code == 415 and ".csv" in pdf.json()["detail"]
    assert xlsx.status_code == 422 and "cannot read the workbook" in xlsx.json()["detail"]  # .xlsx is read, not this
    assert no_file.status_code == 422 and plain.status_code == 415
    assert empty.status_code == 422 and broken.status_code == 422
    assert priority.status_code == 422 and "priority" in priority.json()["detail"]
    assert header_only.status_code == 422 and "no email addresses" in header_only.json()["detail"]
    assert http.sql('SELECT COUNT(*) FROM "Bouncer_Requests"')[0][0] == before  # nothing refused was stored


def test_a_too_large_upload_is_413_and_stores_nothing(http: HttpStack) -> None:
    before = http.sql('SELECT COUNT(*) FROM "Bouncer_Requests"')[0][0]
    big = "email\n" + "".join(f"big.{i}@example.com\n" for i in range(MAX_UPLOAD_BYTES // 10))
    with http.client("submit") as api:
        upload = api.post("/requests", files={"file": ("big.csv", big, "text/csv")})
        as_json = api.post("/requests", json={"emails": big.splitlines()[1:]})
    assert upload.status_code == 413 and as_json.status_code == 413
    assert str(MAX_UPLOAD_BYTES) in upload.json()["detail"]
    assert http.sql('SELECT COUNT(*) FROM "Bouncer_Requests"')[0][0] == before


def test_a_list_over_its_credits_is_402_and_stores_nothing_unless_a_partial_start_is_allowed(http: HttpStack) -> None:
    """The HTTP API checks credits as the CLI does (the same QueueManager.credit_options): `max_credits` here, in
    the JSON body or an upload's fields; `allow_partial` starts the list anyway. The balance's part of the check is
    the CLI's (test_credit_reservations.py): this stack's balance is shared by every test of the session."""
    before = http.sql('SELECT COUNT(*) FROM "Bouncer_Requests"')[0][0]
    two = "email\ncap.3@example.com\ncap.4@example.com\n"
    with http.client("submit") as api:
        capped = api.post("/requests", json={"emails": ["cap.1@example.com", "cap.2@example.com"], "maxCredits": 1})
        upload = api.post("/requests", data={"max_credits": "1"}, files={"file": ("cap.csv", two, "text/csv")})
        unclear = api.post("/requests", data={"allow_partial": "maybe"}, files={"file": ("cap.csv", two, "text/csv")})
        assert http.sql('SELECT COUNT(*) FROM "Bouncer_Requests"')[0][0] == before  # nothing refused was stored
        options = {"max_credits": 1, "allow_partial": True}
        allowed = api.post("/requests", json={"emails": ["cap.1@example.com", "cap.2@example.com"], **options})
    assert capped.status_code == 402 and upload.status_code == 402, (capped.text, upload.text)
    assert "needs 2 credits, more than --max-credits 1" in capped.json()["detail"]
    assert "nothing was stored" in upload.json()["detail"]
    assert unclear.status_code == 422 and "allow_partial" in unclear.json()["detail"]
    assert allowed.status_code == 202, allowed.text
    http.wait_done(allowed.json()["request_id"])


def test_a_queue_is_paused_and_resumed_and_its_failed_jobs_retried_and_cleaned(http: HttpStack) -> None:
    def paused(api: httpx.Client) -> bool:
        return next(q["paused"] for q in api.get("/queues").json() if q["name"] == "batch-download")

    with http.client("admin") as api:
        assert api.post("/queues/batch-download/pause").json() == {
            "queue": "batch-download",
            "action": "paused",
            "count": None,
        }
        try:
            assert paused(api)
        finally:
            assert api.post("/queues/batch-download/resume").status_code == 200
        assert not paused(api)
        retried = api.post("/queues/email-verification/retry-failed").json()
        cleaned = api.post("/queues/email-verification/clean-failed", params={"hours": 0}).json()
    assert retried["action"] == "retried" and retried["count"] >= 0
    assert cleaned["action"] == "cleaned" and cleaned["count"] >= 0


def test_dead_letters_are_listed_and_replayed_once(http: HttpStack) -> None:
    http.sql(
        'INSERT INTO "Bouncer_Dead_Letter_Queue" '
        "(queue, job_name, payload, error_class, message, attempts, created_at) "
        "VALUES ('cleanup-tasks', 'health-check', '{}', 'TestError', 'made by the test', 1, now())"
    )
    with http.client("admin") as api:
        letters = api.get("/dead-letters").json()
        letter = next(d for d in letters if d["message"] == "made by the test")
        first = api.post(f"/dead-letters/{letter['id']}/replay").json()
        second = api.post(f"/dead-letters/{letter['id']}/replay").json()
        remaining = api.get("/dead-letters").json()
        everything = api.get("/dead-letters", params={"include_replayed": True}).json()
        replay_all = api.post("/dead-letters/replay-all").json()
    assert first == {"id": letter["id"], "replayed": True} and second == {"id": letter["id"], "replayed": False}
    assert letter["id"] not in [d["id"] for d in remaining]
    assert next(d for d in everything if d["id"] == letter["id"])["replayed_at"] is not None
    assert replay_all["action"] == "replayed"


def test_health_and_its_recorded_history(http: HttpStack) -> None:
    with http.client("read") as api:
        report = api.get("/health")
        history = eventually(lambda: api.get("/health/history", params={"limit": 5}).json(), timeout=60)
    assert report.status_code in (200, 503)
    body = report.json()
    assert body["status"] in ("healthy", "degraded", "unhealthy") and body["snapshot"]["database_ok"] is True
    assert body["snapshot"]["max_batches"] == 15
    assert history[0]["status"] in ("healthy", "degraded", "unhealthy") and "snapshot" in history[0]


def test_a_cancelled_request_sends_nothing_and_a_repeat_or_an_unknown_id_is_answered(http: HttpStack) -> None:
    def creations() -> int:
        return int(httpx.get(f"{http.simulator.root_url}/__simulator/state", timeout=10).json()["batch_creations"])

    def idle(api: httpx.Client) -> bool:
        counts = next(q["counts"] for q in api.get("/queues").json() if q["name"] == "email-verification")
        return counts["waiting"] + counts["active"] + counts["paused"] == 0

    with http.client("admin") as admin:
        # Held by the pause, the request's three create-batch jobs wait until it is cancelled.
        assert admin.post("/queues/email-verification/pause").status_code == 200
        try:
            request_id = submit(http, make_emails(45, "cancelled"), user_id="canceller")["request_id"]
            before = creations()
            with http.client("submit") as api:
                cancelled = api.delete(f"/requests/{request_id}")
                again = api.delete(f"/requests/{request_id}")
                unknown = api.delete("/requests/no-such-request")
        finally:
            assert admin.post("/queues/email-verification/resume").status_code == 200
        eventually(lambda: idle(admin))  # the jobs ran, found the request cancelled, and sent nothing

    assert cancelled.status_code == 200
    assert cancelled.json() == {"request_id": request_id, "batches_cancelled": 3, "batches_finished": 0, "errors": []}
    assert again.json() == {"request_id": request_id, "batches_cancelled": 0, "batches_finished": 0, "errors": []}
    assert unknown.status_code == 404 and "no request" in unknown.json()["detail"]
    assert creations() == before
    detail = http.wait_done(request_id)
    assert detail["status"] == "cancelled"
    assert detail["progress"]["emails_by_state"] == {"cancelled": 45}
    assert detail["progress"]["batches_by_state"] == {"cancelled": 3}
