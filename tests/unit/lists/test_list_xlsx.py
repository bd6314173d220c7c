"""Reading .xlsx workbooks (generated here with openpyxl): first sheet or --sheet, header or not, cells as text."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import Workbook

from bouncer_queue.errors import InputError
from bouncer_queue.lists import SkippedRow, read_list


def workbook(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def test_first_sheet_with_header_cells_read_as_text(tmp_path: Path) -> None:
    path = workbook(
        tmp_path / "list.xlsx",
        {
            "Leads": [
                ["Name", "Email", "Score", "Signed up", "VIP"],
                ["Ann", "Ann@Example.COM", 42, datetime(2024, 3, 1), True],
                ["Bob", None, 1.5, None, False],
                ["Cy", "cy@example.org"],
            ],
            "Other": [["email"], ["other@example.com"]],
        },
    )
    reader = read_list(path)

    rows = list(reader)

    assert [(r.email, r.name, r.row_number) for r in rows] == [
        ("Ann@example.com", "Ann", 2),
        ("cy@example.org", "Cy", 4),
    ]
    assert rows[0].extra == {
        "Name": "Ann",
        "Email": "Ann@Example.COM",
        "Score": "42",
        "Signed up": "2024-03-01",
        "VIP": "TRUE",
    }
    assert reader.skipped == [
        SkippedRow(3, "no email", {"Name": "Bob", "Email": "", "Score": "1.5", "Signed up": "", "VIP": "FALSE"})
    ]


@pytest.mark.parametrize("sheet", ["Other", "2"])
def test_sheet_by_name_or_number(tmp_path: Path, sheet: str) -> None:
    path = workbook(
        tmp_path / "list.xlsx", {"First": [["email"], ["a@example.com"]], "Other": [["email"], ["b@example.com"]]}
    )

    assert [r.email for r in read_list(path, sheet=sheet)] == ["b@example.com"]


def test_unknown_sheet_lists_the_sheets(tmp_path: Path) -> None:
    path = workbook(tmp_path / "list.xlsx", {"First": [["email"], ["a@example.com"]]})

    with pytest.raises(
        InputError, match=r"no sheet 'Nope'; give --sheet a name or a number \(the sheets are 'First'\)"
    ):
        list(read_list(path, sheet="Nope"))


def test_headerless_sheet_with_column_number(tmp_path: Path) -> None:
    path = workbook(tmp_path / "list.xlsx", {"S": [["Ann", "a@example.com"], ["Bob", "b@example.com"]]})

    rows = list(read_list(path, header=False, column="2"))

    assert [(r.email, r.row_number, r.extra) for r in rows] == [
        ("a@example.com", 1, {"column_1": "Ann", "column_2": "a@example.com"}),
        ("b@example.com", 2, {"column_1": "Bob", "column_2": "b@example.com"}),
    ]


def test_a_text_file_named_xlsx_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "list.xlsx"
    path.write_text("email\na@example.com\n")

    with pytest.raises(InputError, match="cannot read the workbook"):
        list(read_list(path))


def test_sheet_option_on_a_csv_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("email\na@example.com\n")

    with pytest.raises(InputError, match=r"--sheet applies to \.xlsx workbooks only"):
        read_list(path, sheet="1")
