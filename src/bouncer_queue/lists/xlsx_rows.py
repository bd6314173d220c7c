"""Excel workbooks (.xlsx): one sheet read as a table, streamed with openpyxl in read-only mode.

Read-only mode parses the sheet's XML as it is iterated, so a workbook of a million rows is never loaded whole.
Cells become text the way a user reads them: a whole number without ".0", a date in ISO 8601, TRUE/FALSE, an
empty cell "". The rows then go through the same table logic as a CSV (`csv_rows.iter_table`): header, email
column, `--no-header`, `--column`. The row number is the sheet's row number.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Generator, Iterator
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from bouncer_queue.errors import InputError
from bouncer_queue.lists.csv_rows import Record, iter_table
from bouncer_queue.lists.rows import SkippedRow
from bouncer_queue.storage.records import EmailRow


def iter_xlsx(
    path: Path,
    *,
    sheet: str | None = None,
    column: str | None = None,
    header: bool = True,
    on_column: Callable[[str], None] | None = None,
) -> Generator[EmailRow | SkippedRow, None, None]:
    """Rows of one sheet (the first, or `sheet` by name or 1-based number) of the workbook at `path`."""
    workbook = _open(path)
    try:
        records = _records(_sheet(workbook, path, sheet))
        yield from iter_table(records, path, column=column, header=header, on_column=on_column)
    finally:
        workbook.close()  # read-only workbooks keep the file open until closed


def _open(path: Path) -> Any:
    from openpyxl import load_workbook  # imported here: only workbooks pay for it

    try:
        return load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the workbook ({exc}); is it an .xlsx file?") from None


def _sheet(workbook: Any, path: Path, sheet: str | None) -> Any:
    names: list[str] = list(workbook.sheetnames)
    if sheet is None:
        return workbook.worksheets[0]
    if sheet in names:
        return workbook[sheet]
    if sheet.isdigit() and 1 <= int(sheet) <= len(names):
        return workbook.worksheets[int(sheet) - 1]
    shown = ", ".join(repr(name) for name in names)
    raise InputError(f"{path}: no sheet {sheet!r}; give --sheet a name or a number (the sheets are {shown})")


def _records(worksheet: Any) -> Iterator[Record]:
    """(row number, cells as text) per non-empty row; trailing empty cells dropped."""
    for number, values in enumerate(worksheet.iter_rows(min_row=1, values_only=True), start=1):
        cells = [cell_text(value) for value in values]
        while cells and not cells[-1]:
            cells.pop()
        if cells:
            yield number, cells


def cell_text(value: object) -> str:
    """A cell's value as the text a user sees in it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime) and value.time() == time():
        return value.date().isoformat()
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)
