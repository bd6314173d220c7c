"""Writing results back out: the user's own rows, untouched, followed by the verdict, in the user's format.

The last step a user sees. Every input row comes back in input order with its columns and values as given (the
address exactly as typed), then the result columns; a row without an address comes back with status `skipped`
and its reason. Formats: CSV, TSV, a JSON array, JSON Lines (each row is the input object plus the result
keys), and XLSX. Rows are streamed from the repository and written as they come, so an export of millions of
rows never sits whole in memory. `iter_export` gives the same CSV, JSON or JSON Lines as text pieces, for the
HTTP API's streamed download. Spreadsheet cells (CSV, TSV, XLSX) are guarded against formula injection, the one
change made to a user's value, because these files are opened in spreadsheets and the cells hold whatever the
list's author (or a sign-up form) typed.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TextIO, get_args

from bouncer_queue.storage.records import FLAG_COLUMNS as FLAG_COLUMNS  # the export's flag columns, re-exported
from bouncer_queue.storage.records import ExportRow

logger = logging.getLogger(__name__)

ExportFormat = Literal["csv", "tsv", "json", "ndjson", "xlsx"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
RESULT_COLUMNS = ("status", "reason", "score", *FLAG_COLUMNS, "state", "source", "verified_at")
_EMPTY: Mapping[str, Any] = {}
# Rows read before the header is fixed, to learn the input columns when the caller does not name them.
HEADER_LOOKAHEAD = 1000
# Spreadsheets run a cell starting with these as a formula (OWASP "CSV injection"); tab and CR too.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# The output format of each input extension: the same, except TXT (one address a line has no room for results).
_FORMAT_OF_SUFFIX: Mapping[str, ExportFormat] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".json": "json",
    ".jsonl": "ndjson",
    ".ndjson": "ndjson",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
}
#: Streamed formats: NDJSON (one JSON object a line) besides CSV and JSON.
StreamFormat = Literal["csv", "json", "ndjson"]
#: Rows gathered into one piece of a streamed export: few enough to stay small, enough to keep writes cheap.
PIECE_ROWS = 500
# Characters an XLSX cell cannot hold (XML 1.0 forbids them); openpyxl refuses them.
_XLSX_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


async def write_export(
    rows: AsyncIterable[ExportRow],
    out: TextIO,
    fmt: ExportFormat,
    *,
    extra_columns: Sequence[str] | None = None,
) -> int:
    """Write `rows` to `out` as they arrive; return how many were written. XLSX is `write_xlsx` (a binary file).

    CSV/TSV columns: the input columns (`extra_columns`, or those seen in the first HEADER_LOOKAHEAD rows in
    first-seen order), then RESULT_COLUMNS (renamed `result_<name>` where an input column has the name).
    JSON: an array of objects; JSON Lines: one object a line.
    """
    if fmt in ("csv", "tsv"):
        return await _write_table(rows, out, "\t" if fmt == "tsv" else ",", extra_columns)
    if fmt == "json":
        return await _write_json(rows, out)
    if fmt == "ndjson":
        return await _write_ndjson(rows, out)
    raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")


async def write_xlsx(rows: AsyncIterable[ExportRow], path: Path) -> int:
    """Write `rows` as a one-sheet workbook at `path` (openpyxl's write-only mode streams the rows)."""
    from openpyxl import Workbook  # imported here: only workbooks pay for it

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("results")
    iterator = aiter(rows)
    head = await _take(iterator, HEADER_LOOKAHEAD)
    columns = _first_seen_keys(head)
    names = result_names(columns)
    sheet.append([*columns, *names.values()])
    written, cells = 0, _row_cells(columns, set())
    for row in head:
        sheet.append([_xlsx(cell) for cell in cells(row)])
        written += 1
    async for row in iterator:
        sheet.append([_xlsx(cell) for cell in cells(row)])
        written += 1
    workbook.save(path)
    return written


def export_format_for(input_path: Path) -> ExportFormat:
    """The format an input's results are written in by default: the input's own (TXT gives CSV)."""
    return _FORMAT_OF_SUFFIX.get(input_path.suffix.lower(), "csv")


def default_output_path(input_path: Path, fmt: ExportFormat | None = None) -> Path:
    """Next to the input, keeping its extension: "a.tsv" -> "a.verified.tsv"; with another `fmt`, that
    format's ("a.json" with csv -> "a.verified.csv"); a TXT list's results are CSV ("a.verified.csv")."""
    natural = export_format_for(input_path)
    fmt = fmt or natural
    suffix = input_path.suffix if fmt == natural and input_path.suffix.lower() in _FORMAT_OF_SUFFIX else f".{fmt}"
    if fmt == "ndjson" and fmt != natural:
        suffix = ".jsonl"
    return input_path.with_name(f"{input_path.stem}.verified{suffix}")


def input_row(row: ExportRow) -> Mapping[str, Any]:
    """The input row as the user gave it; rows handed in without one (the Python API) show email and name."""
    if row.extra is not None:
        return row.extra
    return {"email": row.email} if row.name is None else {"email": row.email, "name": row.name}


def result_names(columns: Iterable[str], results: Sequence[str] = RESULT_COLUMNS) -> dict[str, str]:
    """Each result column's output name: its own, or `result_<name>` where the input has a column so named."""
    taken = set(columns)
    names: dict[str, str] = {}
    for column in results:
        name = column
        while name in taken:
            name = f"result_{name}"
        names[column] = name
    return names


def summarize(statuses: Iterable[str | None]) -> dict[str, int]:
    """Count per status, most frequent first; a missing status counts as "unverified"."""
    return dict(Counter(status or "unverified" for status in statuses).most_common())


def row_flags(row: ExportRow, raw: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
    """The row's result flags in FLAG_COLUMNS order: as stored in their columns when every one is there (a
    download's results: Bouncer's object is then never decoded), else `result_flags` of Bouncer's object (`raw`
    when the caller has decoded it already: `row.raw` decodes it again)."""
    stored = row.flags
    if stored is not None and None not in stored:
        return stored
    return tuple(result_flags(raw if raw is not None else row.raw).values())


def result_flags(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """The main flags of a Bouncer result object, None where absent: each where Bouncer's object has it (under
    `domain` or `account`; the provider at the top or under `dns`, as the download's columns take it), else
    under its flat snake_case spelling."""
    if not raw:
        return dict.fromkeys(FLAG_COLUMNS)
    # Spelled out rather than walked from a table of paths: this runs once per exported row.
    get = raw.get
    domain, account = _object(get("domain")), _object(get("account"))
    return {
        "accept_all": _first(domain.get("acceptAll"), get, "accept_all"),
        "disposable": _first(domain.get("disposable"), get, "disposable"),
        "free": _first(domain.get("free"), get, "free"),
        "role": _first(account.get("role"), get, "role"),
        "disabled": _first(account.get("disabled"), get, "disabled"),
        "full_mailbox": _first(account.get("fullMailbox"), get, "full_mailbox"),
        "provider": _first(get("provider"), _object(get("dns")).get, "provider"),
        "toxicity": get("toxicity"),
    }


def _object(node: Any) -> Mapping[str, Any]:
    return node if type(node) is dict or isinstance(node, Mapping) else _EMPTY


def _first(nested: Any, get: Any, flat: str) -> Any:
    return nested if nested is not None else get(flat)


def escape_formula(value: str) -> str:
    """Prefix a quote to a cell a spreadsheet would run as a formula, so it is shown as text instead."""
    return "'" + value if value.startswith(_FORMULA_PREFIXES) else value


async def _write_table(
    rows: AsyncIterable[ExportRow], out: TextIO, delimiter: str, extra_columns: Sequence[str] | None
) -> int:
    iterator = aiter(rows)
    head = await _take(iterator, 0 if extra_columns is not None else HEADER_LOOKAHEAD)
    columns = list(extra_columns) if extra_columns is not None else _first_seen_keys(head)
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow([*columns, *result_names(columns).values()])
    written, dropped = 0, set[str]()
    cells = _row_cells(columns, dropped)
    for row in head:
        writer.writerow([_text(cell) for cell in cells(row)])
        written += 1
    async for row in iterator:
        writer.writerow([_text(cell) for cell in cells(row)])
        written += 1
    if dropped:
        logger.warning("export left out columns first seen late: %s", ", ".join(sorted(dropped)))
    return written


async def _write_json(rows: AsyncIterable[ExportRow], out: TextIO) -> int:
    written = 0
    out.write("[")
    async for row in rows:
        out.write(("," if written else "") + "\n" + json.dumps(_json_object(row), ensure_ascii=False, default=str))
        written += 1
    out.write("\n]\n" if written else "]\n")
    return written


async def _write_ndjson(rows: AsyncIterable[ExportRow], out: TextIO) -> int:
    written = 0
    async for row in rows:
        out.write(json.dumps(_json_object(row), ensure_ascii=False, default=str) + "\n")
        written += 1
    return written


async def _take(iterator: AsyncIterator[ExportRow], count: int) -> list[ExportRow]:
    taken: list[ExportRow] = []
    while len(taken) < count:
        row = await anext(iterator, None)
        if row is None:
            break
        taken.append(row)
    return taken


def _first_seen_keys(rows: Iterable[ExportRow]) -> list[str]:
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(input_row(row)))
    return list(keys)


def _row_cells(columns: Sequence[str], dropped: set[str]) -> Callable[[ExportRow], list[object]]:
    """A function giving a row's cells: the input `columns`, then RESULT_COLUMNS; input keys not among
    `columns` are added to `dropped`."""
    known = frozenset(columns)

    def cells(row: ExportRow) -> list[object]:
        given = input_row(row)
        if not given.keys() <= known:
            dropped.update(key for key in given if key not in known)
        verified = row.verified_at.isoformat() if row.verified_at is not None else None
        flags = row_flags(row)
        ours = (row.status, row.reason, row.score, *flags, row.state, row.source, verified)
        return [*map(given.get, columns), *[(("yes" if v else "no") if type(v) is bool else v) for v in ours]]

    return cells


def _text(value: object) -> str:
    """A cell as CSV text: text guarded against formulas; numbers as they are (a negative one is no formula)."""
    if type(value) is str:  # most cells: checked first
        return "'" + value if value.startswith(_FORMULA_PREFIXES) else value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"  # a JSON input's true/false, as JSON writes it
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return escape_formula(value)
    return json.dumps(value, ensure_ascii=False)  # a JSON input's list or object, written as JSON text


def _xlsx(value: object) -> object:
    if value is None or isinstance(value, int | float):
        return value
    return _XLSX_ILLEGAL.sub("", _text(value))


def _json_object(row: ExportRow) -> dict[str, Any]:
    given = dict(input_row(row))
    names = result_names(given, (*RESULT_COLUMNS, "result"))
    raw = row.raw  # decoded once, for the result and, where the columns lack a flag, for the flags
    values = {
        "status": row.status,
        "reason": row.reason,
        "score": row.score,
        **dict(zip(FLAG_COLUMNS, row_flags(row, raw), strict=True)),
        "state": row.state,
        "source": row.source,
        "verified_at": row.verified_at.isoformat() if row.verified_at is not None else None,
        "result": raw,
    }
    return given | {names[key]: value for key, value in values.items()}


async def iter_export(rows: AsyncIterable[ExportRow], fmt: StreamFormat) -> AsyncIterator[str]:
    """The export of `rows` as text pieces of up to PIECE_ROWS rows each: the same CSV (formula-guarded), JSON
    and JSON Lines as write_export."""
    if fmt not in ("csv", "json", "ndjson"):
        raise ValueError(f"unknown export format {fmt!r}; use csv, json or ndjson")
    iterator = aiter(rows)
    head = await _take(iterator, HEADER_LOOKAHEAD if fmt == "csv" else 0)
    buffer = io.StringIO()
    line = _piece_writer(fmt, buffer, _first_seen_keys(head))
    buffer.write("[" if fmt == "json" else "")
    count = 0
    for row in head:
        line(row, count)
        count += 1
    async for row in iterator:
        line(row, count)
        count += 1
        if count % PIECE_ROWS == 0:
            yield _drain(buffer)
    if fmt == "json":
        buffer.write("\n]\n" if count else "]\n")
    yield _drain(buffer)


def _piece_writer(fmt: StreamFormat, buffer: io.StringIO, columns: Sequence[str]) -> Any:
    """A function writing one row (and its position) to `buffer` in `fmt`; the CSV header goes out now."""
    if fmt == "csv":
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([*columns, *result_names(columns).values()])
        cells = _row_cells(columns, set())
        return lambda row, _: writer.writerow([_text(cell) for cell in cells(row)])

    def json_line(row: ExportRow, index: int) -> None:
        text = json.dumps(_json_object(row), ensure_ascii=False, default=str)
        buffer.write(text + "\n" if fmt == "ndjson" else ("," if index else "") + "\n" + text)

    return json_line


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
