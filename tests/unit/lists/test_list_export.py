"""Writing exports: CSV columns and escaping, the JSON array, round trips through the reader."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bouncer_queue.lists import (
    FLAG_COLUMNS,
    RESULT_COLUMNS,
    default_output_path,
    escape_formula,
    read_list,
    summarize,
    write_export,
)
from bouncer_queue.lists.export import iter_export
from bouncer_queue.storage.records import ExportRow

RAW: dict[str, Any] = {
    "email": "ann@example.com",
    "status": "deliverable",
    "reason": "accepted_email",
    "domain": {"name": "example.com", "acceptAll": "no", "disposable": "no", "free": "yes"},
    "account": {"role": "no", "disabled": "no", "fullMailbox": "no"},
    "provider": "google.com",
    "score": 100,
    "toxicity": 0,
}


def _row(email: str, extra: dict[str, str] | None = None, **overrides: Any) -> ExportRow:
    fields: dict[str, Any] = {
        "email": email,
        "name": "Ann",
        "row_number": 2,
        "extra": extra,
        "state": "completed",
        "status": "deliverable",
        "reason": "accepted_email",
        "score": 100,
        "raw_json": json.dumps(RAW),
        "source": "bouncer",
        "verified_at": datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC),
    }
    return ExportRow(**(fields | overrides))


async def _stream(rows: Iterable[ExportRow]) -> AsyncIterator[ExportRow]:
    for row in rows:
        yield row


async def test_csv_columns_are_the_input_columns_then_the_verdict() -> None:
    out = io.StringIO()
    rows = [
        _row("ann@example.com", {"company": "Acme", "Email": "Ann@Example.COM"}),
        _row("bob@example.com", {"company": "B", "Email": "bob@example.com", "city": "Rome"}),
    ]

    assert await write_export(_stream(rows), out, "csv") == 2

    table = list(csv.reader(io.StringIO(out.getvalue())))
    assert table[0] == ["company", "Email", "city", *RESULT_COLUMNS]  # no invented "name" column
    verdict = ["deliverable", "accepted_email", "100", "no", "no", "yes", "no", "no", "no", "google.com", "0"]
    assert table[1] == [
        "Acme",
        "Ann@Example.COM",  # the address as given
        "",
        *verdict,
        "completed",
        "bouncer",
        "2026-11-30T01:02:03+00:00",
    ]
    assert table[2][:3] == ["B", "bob@example.com", "Rome"]


STORED_FLAGS = ("yes", "no", "no", "no", "no", "no", "acme-mail", 3)  # as a download's columns hold them


async def test_stored_flags_are_written_without_decoding_bouncers_object() -> None:
    row = _row("a@example.com", raw_json="{not json: never decoded", flags=STORED_FLAGS)
    out = io.StringIO()

    await write_export(_stream([row]), out, "csv")

    header, first = list(csv.reader(io.StringIO(out.getvalue())))
    assert [first[header.index(flag)] for flag in FLAG_COLUMNS] == [*STORED_FLAGS[:7], "3"]


async def test_a_flag_missing_from_the_columns_takes_the_flags_from_bouncers_object() -> None:
    row = _row("b@example.com", raw_json=json.dumps(RAW), flags=(*STORED_FLAGS[:6], None, 3))
    out = io.StringIO()

    await write_export(_stream([row]), out, "ndjson")

    line = json.loads(out.getvalue())
    assert line["result"] == RAW  # a JSON export gives Bouncer's whole object
    assert {flag: line[flag] for flag in FLAG_COLUMNS} == {
        "accept_all": "no", "disposable": "no", "free": "yes", "role": "no", "disabled": "no",
        "full_mailbox": "no", "provider": "google.com", "toxicity": 0,
    }  # fmt: skip


async def test_result_columns_are_renamed_where_the_input_has_the_name() -> None:
    out = io.StringIO()

    await write_export(_stream([_row("a@example.com", {"email": "a@example.com", "status": "vip"})]), out, "csv")

    header, first = list(csv.reader(io.StringIO(out.getvalue())))
    assert header[:4] == ["email", "status", "result_status", "reason"]
    assert first[:3] == ["a@example.com", "vip", "deliverable"]


async def test_csv_unverified_rows_have_empty_verdict_cells() -> None:
    out = io.StringIO()
    row = _row("x@example.com", None, name=None, state="failed", status=None, reason=None, score=None, raw_json=None)
    row = row._replace(source=None, verified_at=None)

    await write_export(_stream([row]), out, "csv")

    # The address, eleven empty verdict cells, the state, and no source nor verification time.
    assert out.getvalue().splitlines()[1] == "x@example.com" + "," * (len(RESULT_COLUMNS) - 2) + "failed,,"


async def test_skipped_rows_come_back_with_their_reason() -> None:
    out = io.StringIO()
    skipped = _row(
        "", {"email": "", "city": "Rome"}, state="skipped", status="skipped", reason="no email", raw_json=None
    )

    await write_export(
        _stream([_row("a@example.com", {"email": "a@example.com", "city": "Oslo"}), skipped]), out, "tsv"
    )

    lines = [line.split("\t") for line in out.getvalue().splitlines()]
    assert lines[2][:4] == ["", "Rome", "skipped", "no email"]


async def test_csv_formula_cells_are_escaped() -> None:
    out = io.StringIO()
    extra = {"email": "=cmd@example.com", "note": '=HYPERLINK("http://evil")', "a": "+1", "b": "-2", "c": "@SUM(A1)"}
    extra["d"] = "safe=1"

    await write_export(_stream([_row("=cmd@example.com", extra)]), out, "csv")

    cells = next(iter(csv.DictReader(io.StringIO(out.getvalue()))))
    assert cells["email"] == "'=cmd@example.com"
    assert [cells[k] for k in list(extra)[1:]] == ['\'=HYPERLINK("http://evil")', "'+1", "'-2", "'@SUM(A1)", "safe=1"]
    assert cells["score"] == "100"


def test_escape_formula_leaves_plain_text_alone() -> None:
    assert escape_formula("ann@example.com") == "ann@example.com"
    assert escape_formula("\tcmd") == "'\tcmd"


async def test_csv_extra_columns_can_be_named_and_late_ones_are_left_out() -> None:
    out = io.StringIO()

    await write_export(_stream([_row("a@example.com", {"x": "1", "y": "2"})]), out, "csv", extra_columns=["y"])

    assert out.getvalue().splitlines()[0] == "y," + ",".join(RESULT_COLUMNS)


async def test_csv_round_trip_through_the_reader(tmp_path: Path) -> None:
    source = tmp_path / "list.csv"
    source.write_text('email,name,company\nann@example.com,"Lee, Ann",Acme\nbob@example.org,Bob,"Zoë & Co"\n')
    read = list(read_list(source))
    rows = [
        _row(r.email, dict(r.extra or {}), name=r.name, row_number=r.row_number, status=status)
        for r, status in zip(read, ["deliverable", "undeliverable"], strict=True)
    ]
    target = default_output_path(source, "csv")
    with target.open("w", encoding="utf-8", newline="") as out:
        await write_export(_stream(rows), out, "csv")

    again = list(read_list(target))

    assert [(r.email, r.name) for r in again] == [(r.email, r.name) for r in read]
    assert [(r.extra or {})["company"] for r in again] == ["Acme", "Zoë & Co"]
    assert [(r.extra or {})["status"] for r in again] == ["deliverable", "undeliverable"]


async def test_json_export_is_the_input_objects_with_the_result_keys() -> None:
    out = io.StringIO()
    given = {"Email": "Ann@example.com", "age": 3, "tags": ["x"], "n": None}
    rows = [
        _row("ann@example.com", given),
        _row("=x@example.com", {"email": "=x@example.com"}, raw_json=None, status=None),
    ]

    assert await write_export(_stream(rows), out, "json") == 2

    data = json.loads(out.getvalue())
    assert {k: data[0][k] for k in given} == given  # values untouched, types kept
    assert data[1]["email"] == "=x@example.com"  # JSON needs no formula escaping
    assert {flag: data[0][flag] for flag in FLAG_COLUMNS}["full_mailbox"] == "no"
    assert data[0]["result"] == RAW
    assert data[1]["result"] is None
    assert len(out.getvalue().splitlines()) == 4  # "[", one line per row, "]": written incrementally


async def test_ndjson_export_is_one_object_a_line() -> None:
    out = io.StringIO()

    await write_export(_stream([_row("a@example.com", {"email": "a@example.com"})] * 2), out, "ndjson")

    assert [json.loads(line)["status"] for line in out.getvalue().splitlines()] == ["deliverable", "deliverable"]


async def test_json_export_of_nothing_is_an_empty_array() -> None:
    out = io.StringIO()

    assert await write_export(_stream([]), out, "json") == 0
    assert json.loads(out.getvalue()) == []


async def test_unknown_export_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown export format"):
        await write_export(_stream([]), io.StringIO(), "xml")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "fmt", "expected"),
    [
        ("list.csv", None, "list.verified.csv"),
        ("list.tsv", None, "list.verified.tsv"),
        ("list.json", None, "list.verified.json"),
        ("list.jsonl", None, "list.verified.jsonl"),
        ("list.ndjson", None, "list.verified.ndjson"),
        ("list.xlsx", None, "list.verified.xlsx"),
        ("list.txt", None, "list.verified.csv"),
        ("list.json", "csv", "list.verified.csv"),
        ("list.csv", "ndjson", "list.verified.jsonl"),
        ("a.b.txt", "json", "a.b.verified.json"),
    ],
)
def test_default_output_path(name: str, fmt: Any, expected: str) -> None:
    assert default_output_path(Path("/data") / name, fmt) == Path("/data") / expected


def test_summarize_counts_statuses_most_frequent_first() -> None:
    assert summarize(["deliverable", None, "risky", "deliverable"]) == {"deliverable": 2, "unverified": 1, "risky": 1}


async def _joined(rows: list[ExportRow], fmt: str) -> str:
    return "".join([piece async for piece in iter_export(_stream(rows), fmt)])  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["csv", "json"])
async def test_streamed_export_is_the_written_export(fmt: str) -> None:
    rows = [_row(f"u{i}@example.com", {"x": "=1+2"}, name=f"n{i}") for i in range(1203)]
    out = io.StringIO()
    await write_export(_stream(rows), out, fmt)  # type: ignore[arg-type]
    assert await _joined(rows, fmt) == out.getvalue()
    assert await _joined([], fmt) == (await _written([], fmt))


async def _written(rows: list[ExportRow], fmt: str) -> str:
    out = io.StringIO()
    await write_export(_stream(rows), out, fmt)  # type: ignore[arg-type]
    return out.getvalue()


async def test_ndjson_export_is_one_json_object_a_line() -> None:
    rows = [_row("a@example.com", {"email": "a@example.com", "x": "1"}), _row("b@example.com", None)]
    lines = (await _joined(rows, "ndjson")).splitlines()
    assert [json.loads(line)["email"] for line in lines] == ["a@example.com", "b@example.com"]
    assert json.loads(lines[0])["x"] == "1"
    out = io.StringIO()
    await write_export(_stream(rows), out, "ndjson")
    assert out.getvalue() == "\n".join(lines) + "\n"


def test_result_flags_read_bouncers_object_then_the_flat_spelling() -> None:
    from bouncer_queue.lists import result_flags

    assert result_flags(RAW) == {
        "accept_all": "no",
        "disposable": "no",
        "free": "yes",
        "role": "no",
        "disabled": "no",
        "full_mailbox": "no",
        "provider": "google.com",
        "toxicity": 0,
    }
    flat = {"domain": "not an object", "account": {"role": None}, "accept_all": True, "role": "yes", "free": False}
    assert result_flags(flat) | {} == dict.fromkeys(FLAG_COLUMNS) | {"accept_all": True, "role": "yes", "free": False}
    assert result_flags(None) == result_flags({}) == dict.fromkeys(FLAG_COLUMNS)


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
async def test_an_export_holds_a_bounded_number_of_rows_however_many_it_writes(fmt: str) -> None:
    """Structural, not a memory threshold: every row handed over is watched through a weak reference to its input
    row (a tuple has none of its own, and only the row holds it), and while the source makes row n, at most the
    header look-ahead's rows (plus the one being written) are alive."""
    import weakref

    from bouncer_queue.lists.export import HEADER_LOOKAHEAD

    class Watched(dict[str, str]):
        """A dict that can be watched (a plain one takes no weak reference)."""

    handed: list[weakref.ref[Watched]] = []
    most = 0

    async def source() -> AsyncIterator[ExportRow]:
        nonlocal most
        for n in range(3 * HEADER_LOOKAHEAD):
            most = max(most, sum(1 for ref in handed if ref() is not None))
            given = Watched(email=f"user{n}@example.com", city="Paris")
            handed.append(weakref.ref(given))
            yield _row(f"user{n}@example.com", given)
            del given

    written = await write_export(source(), io.StringIO(), fmt)  # type: ignore[arg-type]
    assert written == 3 * HEADER_LOOKAHEAD
    assert most <= HEADER_LOOKAHEAD + 1
