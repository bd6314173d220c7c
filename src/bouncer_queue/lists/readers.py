"""Reading a user's list (CSV, TSV, TXT, JSON, JSON Lines, XLSX) as a stream of `EmailRow`: the ingest stage's source.

`read_list` checks what it can without reading (format, encoding name, the file exists) and returns a
`ListReader`. Iterating the reader opens the file and yields rows lazily, so a list of millions of addresses
never sits whole in memory. Rows without an address are counted and reported; with `keep_skipped` they are
also yielded (as `EmailRow`s with `skipped` set), so the ledger stores them and the export gives them back.
A list that cannot be read raises InputError *during* iteration, at the row where the problem is: the
consumer must treat an iteration that raised as a failed list (`ListReader.complete` stays False), never as
a shorter one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Literal, NoReturn, TextIO, get_args

from bouncer_queue.errors import InputError
from bouncer_queue.lists.csv_rows import iter_csv
from bouncer_queue.lists.decoding import bounded_lines, check_encoding, open_text
from bouncer_queue.lists.json_rows import iter_json, iter_ndjson
from bouncer_queue.lists.rows import SkippedRow, make_row
from bouncer_queue.lists.xlsx_rows import iter_xlsx
from bouncer_queue.storage.records import EmailRow

ListFormat = Literal["csv", "tsv", "txt", "json", "ndjson", "xlsx"]
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
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
}
_TABLES = ("csv", "tsv", "xlsx")
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
        header: bool = True,
        sheet: str | None = None,
        keep_skipped: bool = False,
    ) -> None:
        self.path, self.fmt, self.column, self.max_rows, self.encoding = path, fmt, column, max_rows, encoding
        self.header, self.sheet, self.keep_skipped = header, sheet, keep_skipped
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
        read = 0
        try:
            with self._items() as items:
                # enumerate counts in C: this loop runs once per row of lists of millions.
                for read, item in enumerate(items, start=1):
                    if limit is not None and read > limit:
                        self._too_many_rows()
                    if isinstance(item, SkippedRow):
                        self._skip(item)
                        if self.keep_skipped:
                            yield item.as_email_row()
                        continue
                    yield item
            self.complete = True
        finally:
            # Each row read was either yielded or skipped, so one count gives both.
            self.rows_read, self.rows_yielded = read, read - self.skipped_total

    @contextmanager
    def _items(self) -> Iterator[Iterator[EmailRow | SkippedRow]]:
        if self.fmt == "xlsx":
            rows = iter_xlsx(
                self.path, sheet=self.sheet, column=self.column, header=self.header, on_column=self._found_column
            )
            with closing(rows):
                yield rows
            return
        with open_text(self.path, self.encoding) as text:
            yield self._parse(text)

    def _parse(self, text: TextIO) -> Iterator[EmailRow | SkippedRow]:
        if self.fmt in ("csv", "tsv"):
            delimiter = "\t" if self.fmt == "tsv" else None
            return iter_csv(
                text,
                self.path,
                column=self.column,
                delimiter=delimiter,
                header=self.header,
                on_column=self._found_column,
            )
        if self.fmt == "json":
            return iter_json(text, self.path, column=self.column)
        if self.fmt == "ndjson":
            return iter_ndjson(text, self.path, column=self.column)
        return iter_txt(text, self.path)

    def _found_column(self, name: str) -> None:
        self.email_column = name

    def _too_many_rows(self) -> NoReturn:
        raise InputError(f"{self.path}: the list has more than {self.max_rows} rows; split it or raise --max-rows")

    @property
    def skipped_summary(self) -> str:
        """The skipped rows for people: "" when none, else the count and the first row numbers."""
        return describe_skipped(self.skipped_total, [row.row_number for row in self.skipped])

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
    header: bool = True,
    sheet: str | None = None,
    keep_skipped: bool = False,
) -> ListReader:
    """A lazy reader over the list at `path`; the format comes from `fmt` or else from the file extension.

    `header=False` reads a CSV, TSV or sheet whose first row is data; other formats have no header row.
    `sheet` (a name or a 1-based number) picks a workbook's sheet; the first one by default.
    """
    resolved = _resolve_format(path, fmt)
    if encoding is not None:
        check_encoding(encoding)
    if column is not None and resolved == "txt":
        if column.strip() not in ("1", "email"):
            raise InputError(f"{path}: a TXT list has one address per line, so --column can only be 1")
        column = None
    if sheet is not None and resolved != "xlsx":
        raise InputError(f"{path}: --sheet applies to .xlsx workbooks only")
    if max_rows is not None and max_rows < 1:
        raise InputError(f"--max-rows must be at least 1, not {max_rows}")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    return ListReader(
        path,
        resolved,
        column=column,
        max_rows=max_rows,
        encoding=encoding,
        header=header or resolved not in _TABLES,
        sheet=sheet,
        keep_skipped=keep_skipped,
    )


def describe_skipped(total: int, row_numbers: list[int], shown: int = 20) -> str:
    """ "3 rows skipped (no address): rows 4, 9, 12", or the first `shown` rows and how many more."""
    if not total:
        return ""
    listed = ", ".join(str(n) for n in row_numbers[:shown])
    more = total - min(len(row_numbers), shown)
    noun = "row" if total == 1 else "rows"
    return f"{total} {noun} skipped (no address): {noun} {listed}" + (f" and {more} more" if more else "")


def iter_txt(text: TextIO, path: Path) -> Iterator[EmailRow | SkippedRow]:
    """One address per line; blank lines and '#' comments are not rows."""
    for number, line in enumerate(bounded_lines(text, path), start=1):
        value = line.strip()
        if value and not value.startswith("#"):
            yield make_row(number, value, None, {"email": value})


def _resolve_format(path: Path, fmt: str | None) -> ListFormat:
    if fmt is not None:
        # Format names are the extensions without the dot, so one table serves both.
        named = _EXTENSIONS.get("." + fmt.strip().lower().lstrip("."))
        if named is not None:
            return named
        raise InputError(f"unknown list format {fmt!r}; use one of {', '.join(LIST_FORMATS)}")
    found = _EXTENSIONS.get(path.suffix.lower())
    if found is None:
        known = ", ".join(sorted(_EXTENSIONS))
        raise InputError(
            f"{path}: cannot tell the list format from the extension (known: {known}); "
            f"pass --input-format ({', '.join(LIST_FORMATS)})"
        )
    return found
