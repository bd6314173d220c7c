"""BouncerClient against the in-process simulator: every endpoint, its parsing, and the metrics hook."""

from __future__ import annotations

import csv
import io

from bouncer_queue.bouncer import BouncerClient
from bouncer_queue.simulator import ManualClock, SimulatorState, expected_result
from bouncer_queue.storage.records import BatchEmail

EMAILS = [
    BatchEmail("ann+crm@example.com", "crm-1"),
    BatchEmail("ANN+crm@example.com"),
    BatchEmail("deliverable@sandbox.usebouncer.com", "sb"),
    BatchEmail("not-an-address"),
]


async def test_batch_lifecycle_create_poll_download_delete(bouncer: BouncerClient, clock: ManualClock) -> None:
    created = await bouncer.create_batch(EMAILS)
    assert (created.status, created.quantity, created.duplicates) == ("queued", 3, 1)
    assert len(created.batch_id) == 24 and created.created is not None

    clock.advance(1)
    done = await bouncer.get_batch(created.batch_id, with_stats=True)
    assert done.status == "completed" and done.started is not None and done.completed is not None
    assert done.processed == 3 and done.stats is not None and sum(done.stats.values()) == 3

    results = await bouncer.download(created.batch_id)
    expected = [
        expected_result("ann+crm@example.com", "tests", name="crm-1"),
        expected_result("deliverable@sandbox.usebouncer.com", "tests", name="sb"),
        expected_result("not-an-address", "tests"),
    ]
    assert [r.raw_object() for r in results] == expected
    assert results[1].status == "deliverable" and results[1].provider == "sandbox.usebouncer.com"
    assert results[2].reason == "invalid_email"

    await bouncer.delete_batch(created.batch_id)


async def test_download_filter_and_csv(bouncer: BouncerClient, clock: ManualClock) -> None:
    batch = await bouncer.create_batch(
        [BatchEmail("deliverable@sandbox.usebouncer.com"), BatchEmail("undeliverable@sandbox.usebouncer.com")]
    )
    clock.advance(1)
    only_bad = await bouncer.download(batch.batch_id, filter="undeliverable")
    assert [r.email for r in only_bad] == ["undeliverable@sandbox.usebouncer.com"]

    rows = list(csv.DictReader(io.StringIO(await bouncer.download_csv(batch.batch_id))))
    assert [(r["email"], r["status"]) for r in rows] == [
        ("deliverable@sandbox.usebouncer.com", "deliverable"),
        ("undeliverable@sandbox.usebouncer.com", "undeliverable"),
    ]


async def test_finish_stops_a_running_batch(bouncer: BouncerClient, sim_state: SimulatorState) -> None:
    batch = await bouncer.create_batch([BatchEmail(f"user{i}@example.com") for i in range(5)])
    await bouncer.finish_batch(batch.batch_id)
    info = await bouncer.get_batch(batch.batch_id)
    assert info.status == "completed" and info.credits == 0
    assert await bouncer.download(batch.batch_id) == []
    assert await bouncer.credits() == sim_state.config.credits


async def test_credits_and_realtime_verify_with_plus_sign(bouncer: BouncerClient) -> None:
    assert await bouncer.credits() == 1_000_000
    result = await bouncer.verify("first+tag@example.com", timeout=10)
    assert result.email == "first+tag@example.com"
    assert result.raw == expected_result("first+tag@example.com", "tests", realtime=True, timeout=10)
    assert await bouncer.credits() == 999_999


async def test_on_response_reports_group_and_status(bouncer: BouncerClient, responses: list[tuple[str, int]]) -> None:
    batch = await bouncer.create_batch([BatchEmail("a@example.com")])
    await bouncer.get_batch(batch.batch_id)
    await bouncer.credits()
    await bouncer.verify("a@example.com")
    assert responses == [("batch_create", 200), ("batch_status", 200), ("credits", 200), ("verify", 200)]


async def test_callback_url_arrives_intact(
    bouncer: BouncerClient, sim_state: SimulatorState, clock: ManualClock
) -> None:
    url = "http://127.0.0.1:9/hook?token=a+b&x=%2F"
    batch = await bouncer.create_batch([BatchEmail("a@example.com")], callback_url=url)
    clock.advance(1)
    [(called, body)] = sim_state.take_callbacks()
    assert called == url
    assert (body["batchId"], body["status"], body["processed"]) == (batch.batch_id, "completed", 1)


async def test_repr_hides_the_key(bouncer: BouncerClient) -> None:
    assert repr(bouncer) == "BouncerClient(base_url='http://simulator/v1.1/')"
