"""CSV (and TSV) lists: delimiter sniffing, the header row, the email column, and rows streamed one by one.

`iter_table` is shared with the XLSX reader: it turns (line, cells) records into rows. The first record is the
header unless `header=False` (`--no-header`: the columns are then named column_1, column_2, ...). The email
column is the one named by `--column` (a header or a 1-based number), else the first header that is a known
email name, else the column whose first rows hold addresses. The whole row, every column under its header, is
kept in `extra`, so an export can give the user back their own row untouched.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bouncer_queue.errors import InputError
from bouncer_queue.lists import columns as cols
from bouncer_queue.lists.decoding import bounded_lines
from bouncer_queue.lists.rows import SkippedRow, make_row
from bouncer_queue.storage.records import EmailRow

if TYPE_CHECKING:
    from _csv import Reader as CsvReader

DELIMITERS = ",;\t|"
# Rows looked at to find the email column by content; they are replayed afterwards, not lost.
_DETECTION_ROWS = 50
# A legitimate multi-line cell (an address, a note) is a few lines; hundreds mean an unbalanced quote.
_MAX_RECORD_LINES = 100

Record = tuple[int, list[str]]


def sniff_delimiter(header_line: str) -> str:
    """The candidate delimiter seen most often outside quotes in the header line; a comma if none is."""
    unquoted = re.sub(r'"[^"]*"', "", header_line)
    counts = {d: unquoted.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.__getitem__)  # max keeps the first of equals, so ties go to ","
    return best if counts[best] else ","


@dataclass(frozen=True)
class _Layout:
    headers: tuple[str, ...]
    email: int
    names: cols.NameColumns

    def rows(self, path: Path, records: Iterable[Record]) -> Iterator[EmailRow | SkippedRow]:
        """`to_row` of each record, its email cell checked first. A row as wide as the header (nearly every
        row) takes the same steps inline, in this one loop: this runs once per row of lists of millions."""
        headers, email, width = self.headers, self.email, len(self.headers)
        # The name's cell for make_row, which trims it; a first and a last name are joined by `pick`.
        name_at, joined = self.names.full, self.names.full is None and self.names != cols.NameColumns()
        for line, cells in records:
            if len(cells) != width or joined:
                _check_email_cell(path, line, cells, email)
                yield self.to_row(line, cells)
                continue
            cell = cells[email]
            if "\n" in cell or "\r" in cell:
                _check_email_cell(path, line, cells, email)
            name = cells[name_at] if name_at is not None else None
            yield make_row(line, cell, name, dict(zip(headers, cells, strict=False)))  # as wide: checked

    def to_row(self, line: int, cells: Sequence[str]) -> EmailRow | SkippedRow:
        row = dict(zip(self.headers, cells, strict=False))  # a short row keeps the cells it has
        width = len(cells)
        if width > len(self.headers):
            # Cells past the header's width are kept under positional names rather than dropped.
            row.update({f"column_{p + 1}": cells[p] for p in range(len(self.headers), width)})
        if self.email >= width:
            return SkippedRow(line, f"row has {width} fields, the header {len(self.headers)}: no email cell", row)
        return make_row(line, cells[self.email], self.names.pick(cells), row)


def iter_csv(
    text: TextIO,
    path: Path,
    *,
    column: str | None = None,
    delimiter: str | None = None,
    header: bool = True,
    on_column: Callable[[str], None] | None = None,
) -> Iterator[EmailRow | SkippedRow]:
    """Rows of a CSV list, lazily. InputError for a missing header or email column and for broken quoting."""
    lines = bounded_lines(text, path)
    first = next(lines, None)
    if first is None:
        raise InputError(f"{path}: the file is empty")
    reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter or sniff_delimiter(first))
    yield from iter_table(_records(reader, path), path, column=column, header=header, on_column=on_column)


def iter_table(
    records: Iterator[Record],
    path: Path,
    *,
    column: str | None = None,
    header: bool = True,
    on_column: Callable[[str], None] | None = None,
) -> Iterator[EmailRow | SkippedRow]:
    """Rows of a table (CSV, TSV or a sheet) given as (line, cells) records, the header first unless `header=False`."""
    first = next(records, None)
    if first is None:
        raise InputError(f"{path}: the file is empty")
    layout, replay = _layout(path, first, records, column, header)
    if on_column is not None:
        on_column(layout.headers[layout.email])
    yield from layout.rows(path, itertools.chain(replay, records))


def _layout(
    path: Path, first: Record, records: Iterator[Record], column: str | None, header: bool
) -> tuple[_Layout, list[Record]]:
    line, cells = first
    if not header:
        headers = tuple(f"column_{p}" for p in range(1, len(cells) + 1))
        sample = [first, *itertools.islice(records, _DETECTION_ROWS)]
        email = _email_column(path, headers, sample, column)
        return _Layout(headers, email, cols.NameColumns()), sample
    if len(cells) == 1 and column is None and cols.looks_like_address(cells[0]):
        # A one-column file of bare addresses is a TXT list saved as .csv: read its first line as data.
        return _Layout(("email",), 0, cols.NameColumns()), [first]
    if any(cols.looks_like_address(cell) for cell in cells):
        raise InputError(
            f"{path}: line {line} looks like data, not a header; pass --no-header (and --column N for the "
            "address column if it is not found), or add a header row"
        )
    headers = cols.unique_headers(cells)
    sample = list(itertools.islice(records, _DETECTION_ROWS))
    email = _email_column(path, headers, sample, column)
    return _Layout(headers, email, cols.find_name_columns(headers, email)), sample


def _email_column(path: Path, headers: tuple[str, ...], sample: list[Record], column: str | None) -> int:
    shown = ", ".join(repr(h) for h in headers)
    if column is not None:
        found = cols.find_named(headers, column)
        if found is None:
            raise InputError(
                f"{path}: no column {column!r}; give --column a header or a number from 1 to {len(headers)} "
                f"(the columns are {shown})"
            )
        return found
    found = cols.find_by_alias(headers, cols.EMAIL_HEADERS)
    if found is None:
        found = cols.find_by_content(headers, [cells for _, cells in sample])
    if found is None:
        raise InputError(f"{path}: no email column found among {shown}; name it with --column (a header or a number)")
    return found


def _records(reader: CsvReader, path: Path) -> Iterator[Record]:
    """(first line, cells) per record; blank lines dropped; csv.Error and runaway quotes become InputError."""
    start = 1
    try:
        for cells in reader:
            end = reader.line_num
            if end - start >= _MAX_RECORD_LINES:
                lines = end - start
                raise InputError(f"{path}: line {start}: a quoted cell runs over {lines} lines; unbalanced quote?")
            if cells:
                yield start, cells
            start = end + 1
    except csv.Error as exc:
        raise InputError(f"{path}: line {start}: broken CSV ({exc}); check for an unbalanced quote") from None


def _check_email_cell(path: Path, line: int, cells: Sequence[str], email: int) -> None:
    # An address never spans lines; one that does swallowed the rows after an unbalanced quote.
    if email < len(cells) and ("\n" in cells[email] or "\r" in cells[email]):
        raise InputError(f"{path}: line {line}: the email cell spans several lines; check for an unbalanced quote")
