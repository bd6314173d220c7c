"""Reading a user's list (CSV, TSV, TXT, JSON, JSON Lines) as a stream of `EmailRow`: the ingest stage's source.

`read_list` checks what it can without reading (format, encoding name, the file exists) and returns a
`ListReader`. Iterating the reader opens the file and yields rows lazily, so a list of millions of addresses
never sits whole in memory. Rows without an address are counted and reported, not yielded. A list that
cannot be read raises InputError *during* iteration, at the row where the problem is: the consumer must treat
an iteration that raised as a failed list (`ListReader.complete` stays False), never as a shorter one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NoReturn, TextIO, get_args

from bouncer_queue.errors import InputError
from bouncer_queue.lists.csv_rows import iter_csv
from bouncer_queue.lists.decoding import bounded_lines, check_encoding, open_text
from bouncer_queue.lists.json_rows import iter_json, iter_ndjson
from bouncer_queue.lists.rows import SkippedRow, make_row
from bouncer_queue.storage.records import EmailRow

ListFormat = Literal["csv", "tsv", "txt", "json", "ndjson"]
LIST_FORMATS: tuple[str, ...] = get_args(ListFormat)
_EXTENSIONS: dict[str, ListFormat] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "txt",
    ".text": "txt",
    ".lst": "txt",
    ".json": "json",
    ".jsonl": "ndjson",
    ".ndjson": "ndjson",
}
# Enough to show the user what went wrong; the total is counted separately, so memory stays bounded.
MAX_SKIPPED_KEPT = 1000


class ListReader:
    """An input list, read lazily. Iterate it (again, if needed) for rows; the counts describe the last pass.

    `row_number` of each row, and of each skipped row, is where the user finds it: the line the row starts on
    (CSV, TSV, TXT, JSON Lines), or its 1-based position in a JSON array.
    """

    def __init__(
        self,
        path: Path,
        fmt: ListFormat,
        *,
        column: str | None = None,
        max_rows: int | None = None,
        encoding: str | None = None,
    ) -> None:
        self.path, self.fmt, self.column, self.max_rows, self.encoding = path, fmt, column, max_rows, encoding
        self._reset()

    def _reset(self) -> None:
        self.rows_read = 0  #: data rows seen, skipped ones included (headers, blanks and comments are not rows)
        self.rows_yielded = 0
        self.skipped: list[SkippedRow] = []  #: the first MAX_SKIPPED_KEPT skipped rows
        self.skipped_total = 0
        self.email_column: str | None = None  #: the CSV column the addresses came from
        self.complete = False  #: True once a pass reached the end of the file without error

    def __iter__(self) -> Iterator[EmailRow]:
        self._reset()
        limit = self.max_rows
        with open_text(self.path, self.encoding) as text:
            for item in self._parse(text):
                self.rows_read += 1
                if limit is not None and self.rows_read > limit:
                    self._too_many_rows()
                if isinstance(item, SkippedRow):
                    self._skip(item)
                    continue
                self.rows_yielded += 1
                yield item
        self.complete = True

    def _parse(self, text: TextIO) -> Iterator[EmailRow | SkippedRow]:
        if self.fmt in ("csv", "tsv"):
            delimiter = "\t" if self.fmt == "tsv" else None
            return iter_csv(text, self.path, column=self.column, delimiter=delimiter, on_column=self._found_column)
        if self.fmt == "json":
            return iter_json(text, self.path, column=self.column)
        if self.fmt == "ndjson":
            return iter_ndjson(text, self.path, column=self.column)
        return iter_txt(text, self.path)

    def _found_column(self, name: str) -> None:
        self.email_column = name

    def _too_many_rows(self) -> NoReturn:
        raise InputError(f"{self.path}: the list has more than {self.max_rows} rows; split it or raise --max-rows")

    def _skip(self, row: SkippedRow) -> None:
        self.skipped_total += 1
        if len(self.skipped) < MAX_SKIPPED_KEPT:
            self.skipped.append(row)

    def __repr__(self) -> str:
        return f"ListReader({str(self.path)!r}, fmt={self.fmt!r}, rows_read={self.rows_read})"


def read_list(
    path: Path,
    *,
    column: str | None = None,
    fmt: str | None = None,
    max_rows: int | None = None,
    encoding: str | None = None,
) -> ListReader:
    """A lazy reader over the list at `path`; the format comes from `fmt` or else from the file extension."""
    resolved = _resolve_format(path, fmt)
    if encoding is not None:
        check_encoding(encoding)
    if column is not None and resolved == "txt":
        raise InputError(f"{path}: --column applies to CSV and JSON lists; a TXT list has one address per line")
    if max_rows is not None and max_rows < 1:
        raise InputError(f"max_rows must be at least 1, not {max_rows}")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    return ListReader(path, resolved, column=column, max_rows=max_rows, encoding=encoding)


def iter_txt(text: TextIO, path: Path) -> Iterator[EmailRow | SkippedRow]:
    """One address per line; blank lines and '#' comments are not rows."""
    for number, line in enumerate(bounded_lines(text, path), start=1):
        value = line.strip()
        if value and not value.startswith("#"):
            yield make_row(number, value, None, None)


def _resolve_format(path: Path, fmt: str | None) -> ListFormat:
    if fmt is not None:
        # Format names are the extensions without the dot, so one table serves both.
        named = _EXTENSIONS.get("." + fmt.strip().lower().lstrip("."))
        if named is not None:
            return named
        raise InputError(f"unknown list format {fmt!r}; use one of {', '.join(LIST_FORMATS)}")
    found = _EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise InputError(f"{path}: cannot tell the list format from the extension; pass --format csv, txt or json")
    return found
