"""The list a user gives is the list they get back: for every reader, rows go through the ledger (ingest, results,
export) and come out in input order with every input column value for value, then the result columns.

Each input has an address with an upper-case domain (it must come back as typed) and rows without an address
(they must come back, in place, as `skipped`). The input is parsed here independently of our readers, so the
comparison does not trust the code under test to say what the input was.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook

from bouncer_queue.lists import default_output_path, export_format_for, read_list, write_export, write_xlsx
from bouncer_queue.pipeline.ingest import chunked
from bouncer_queue.storage.records import RequestInfo, ResultRow
from bouncer_queue.storage.repository import Repository

ROWS = [
    ["Ann Lee", "Ann@Example.COM", "Paris", "1"],
    ["No Address", "", "Rome", "2"],
    ["Bob", "bob@example.org", "", "3"],
    ["Cy", "cy@example.net", "Oslo, Norway", "4"],
    ["Dee", "", "", "5"],
    ["Eve", "eve@example.com", 'say "hi"', "6"],
]
HEADER = ["name", "email", "city", "id"]
Table = list[list[str]]


def write_input(path: Path, header: bool) -> None:
    """The input file in the format its extension names."""
    table = ([HEADER] if header else []) + ROWS
    if path.suffix in (".csv", ".tsv"):
        with path.open("w", encoding="utf-8", newline="") as out:
            csv.writer(out, delimiter="\t" if path.suffix == ".tsv" else ",", lineterminator="\r\n").writerows(table)
    elif path.suffix == ".txt":
        path.write_text("".join(f"{row[1]}\n" for row in ROWS if row[1]), encoding="utf-8")
    elif path.suffix == ".json":
        path.write_text(json.dumps([_object(row) for row in ROWS] + ["plain@Example.com"]), encoding="utf-8")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(_object(row)) + "\n" for row in ROWS), encoding="utf-8")
    else:
        book = Workbook()
        for row in table:
            book.active.append([int(c) if c.isdigit() else (c or None) for c in row])
        book.save(path)


def _object(row: list[str]) -> dict[str, Any]:
    return {"name": row[0], "email": row[1] or None, "city": row[2], "id": int(row[3]), "tags": [row[3]]}


async def through_the_ledger(repo: Repository, source: Path, header: bool, column: str | None) -> Path:
    reader = read_list(source, header=header, column=column, keep_skipped=True)
    request = RequestInfo(request_id="mirror", user_id="u")
    batch_ids = await repo.ingest_request(request, chunked(reader, 2, [0]))
    for batch_id in batch_ids:
        emails = await repo.batch_emails(batch_id)
        await repo.store_results(
            batch_id, [ResultRow(e.email.upper(), "deliverable", "accepted_email") for e in emails]
        )
    target = default_output_path(source)
    fmt = export_format_for(source)
    if fmt == "xlsx":
        await write_xlsx(repo.iter_export("mirror"), target)
    else:
        with target.open("w", encoding="utf-8", newline="") as out:
            await write_export(repo.iter_export("mirror"), out, fmt)
    return target


def read_back(path: Path) -> list[dict[str, Any]]:
    if path.suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle, delimiter="\t" if path.suffix == ".tsv" else ","))
    if path.suffix == ".json":
        return list(json.loads(path.read_text(encoding="utf-8")))
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    book = load_workbook(path, read_only=True)
    rows = list(book.active.iter_rows(values_only=True))
    book.close()  # a read-only workbook keeps its file open until closed
    # A write-only sheet stores no empty cells and no size, so a row ends at its last value: pad it.
    width = len(rows[0])
    return [dict(zip(rows[0], (*row, *(None,) * (width - len(row))), strict=True)) for row in rows[1:]]


def expect_table(header: bool) -> Callable[[list[dict[str, Any]]], None]:
    names = HEADER if header else [f"column_{n}" for n in range(1, 5)]

    def check(out: list[dict[str, Any]]) -> None:
        assert [[row[name] or "" for name in names] for row in out] == ROWS  # value for value, in order
        assert list(out[0])[:4] == names  # the input columns first, as they were, then the results
        assert [row["status"] for row in out] == [
            "deliverable",
            "skipped",
            "deliverable",
            "deliverable",
            "skipped",
            "deliverable",
        ]

    return check


def check_json(out: list[dict[str, Any]]) -> None:
    given = [_object(row) for row in ROWS]
    assert [{key: row[key] for key in obj} for row, obj in zip(out, given, strict=False)] == given  # types kept
    assert out[1]["status"] == "skipped" and out[1]["reason"] == "no email"
    assert [row["status"] for row in out].count("deliverable") == len(out) - 2


def check_txt(out: list[dict[str, Any]]) -> None:
    assert [row["email"] for row in out] == [row[1] for row in ROWS if row[1]]


CASES = [
    pytest.param("list.csv", True, None, expect_table(True), id="csv"),
    pytest.param("list.tsv", False, None, expect_table(False), id="tsv-no-header"),
    pytest.param("list.csv", False, "2", expect_table(False), id="csv-no-header-column-2"),
    pytest.param("list.xlsx", True, None, expect_table(True), id="xlsx"),
    pytest.param("list.json", True, None, check_json, id="json"),
    pytest.param("list.jsonl", True, None, check_json, id="jsonl"),
    pytest.param("list.txt", True, None, check_txt, id="txt"),
]


@pytest.mark.parametrize(("name", "header", "column", "check"), CASES)
async def test_every_input_row_comes_back_untouched_with_its_result(
    repo: Repository,
    tmp_path: Path,
    name: str,
    header: bool,
    column: str | None,
    check: Callable[[list[dict[str, Any]]], None],
) -> None:
    source = tmp_path / name
    write_input(source, header)

    target = await through_the_ledger(repo, source, header, column)

    assert target.suffix == (".csv" if source.suffix == ".txt" else source.suffix)  # JSON in, JSON out, ...
    check(read_back(target))


async def test_a_status_filter_can_ask_for_the_skipped_rows(repo: Repository, tmp_path: Path) -> None:
    source = tmp_path / "list.csv"
    write_input(source, True)
    await through_the_ledger(repo, source, True, None)

    out = io.StringIO()
    await write_export(repo.iter_export("mirror", {"skipped"}), out, "csv")

    assert [row["name"] for row in csv.DictReader(io.StringIO(out.getvalue()))] == ["No Address", "Dee"]


async def test_skipped_rows_and_invalid_addresses_keep_their_places_and_their_own_answers(
    repo: Repository, tmp_path: Path
) -> None:
    # A row without an address is kept as `skipped`; one the pre-filter refuses is answered locally (`invalid`).
    source = tmp_path / "list.csv"
    source.write_text("email,n\nok@example.com,1\n,2\nnot-an-address,3\nok2@example.com,4\n", encoding="utf-8")
    await through_the_ledger(repo, source, True, None)

    every = [(r.extra, r.state, r.status, r.source) for r in [row async for row in repo.iter_export("mirror")]]
    both = [r.status for r in [row async for row in repo.iter_export("mirror", {"skipped", "undeliverable"})]]

    assert every == [
        ({"email": "ok@example.com", "n": "1"}, "completed", "deliverable", "bouncer"),
        ({"email": "", "n": "2"}, "skipped", "skipped", None),
        ({"email": "not-an-address", "n": "3"}, "invalid", "undeliverable", "local"),
        ({"email": "ok2@example.com", "n": "4"}, "completed", "deliverable", "bouncer"),
    ]
    assert both == ["skipped", "undeliverable"]
    progress = await repo.request_progress("mirror")
    assert progress.done and progress.emails_by_state == {"completed": 2, "skipped": 1, "invalid": 1}
