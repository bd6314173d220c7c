"""Writing results back out: the user's own columns followed by Bouncer's verdict, as CSV or a JSON array
(`write_export`, to a file), or as CSV, JSON or NDJSON text pieces (`iter_export`, for the HTTP API's streamed
download).

The last step a user sees. Rows are streamed from the repository and written as they come, so an export of
millions of rows never sits whole in memory. CSV cells are guarded against formula injection because these
files are opened in spreadsheets and the cells hold whatever the list's author (or a sign-up form) typed.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TextIO

from bouncer_queue.storage.records import ExportRow

logger = logging.getLogger(__name__)

ExportFormat = Literal["csv", "json"]
FLAG_COLUMNS = ("accept_all", "disposable", "free", "role", "disabled", "full_mailbox", "provider", "toxicity")
RESULT_COLUMNS = ("status", "reason", "score", *FLAG_COLUMNS, "state", "source", "verified_at")
# Where each flag sits in Bouncer's result object, with the flat snake_case spelling as a fallback.
_FLAG_PATHS: Mapping[str, tuple[tuple[str, ...], ...]] = {
    "accept_all": (("domain", "acceptAll"), ("accept_all",)),
    "disposable": (("domain", "disposable"), ("disposable",)),
    "free": (("domain", "free"), ("free",)),
    "role": (("account", "role"), ("role",)),
    "disabled": (("account", "disabled"), ("disabled",)),
    "full_mailbox": (("account", "fullMailbox"), ("full_mailbox",)),
    "provider": (("provider",),),
    "toxicity": (("toxicity",),),
}
# Rows read before the CSV header is fixed, to learn the extra columns when the caller does not name them.
HEADER_LOOKAHEAD = 1000
# Spreadsheets run a cell starting with these as a formula (OWASP "CSV injection"); tab and CR too.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
#: Streamed formats: NDJSON (one JSON object a line) besides the two files write_export writes.
StreamFormat = Literal["csv", "json", "ndjson"]
#: Rows gathered into one piece of a streamed export: few enough to stay small, enough to keep writes cheap.
PIECE_ROWS = 500


async def write_export(
    rows: AsyncIterable[ExportRow],
    out: TextIO,
    fmt: ExportFormat,
    *,
    extra_columns: Sequence[str] | None = None,
) -> int:
    """Write `rows` to `out` as they arrive; return how many were written.

    CSV columns: email, name, the extra columns (`extra_columns`, or those seen in the first HEADER_LOOKAHEAD
    rows in first-seen order), then RESULT_COLUMNS. JSON: an array with one object per row.
    """
    if fmt == "csv":
        return await _write_csv(rows, out, extra_columns)
    if fmt == "json":
        return await _write_json(rows, out)
    raise ValueError(f"unknown export format {fmt!r}; use csv or json")


def default_output_path(input_path: Path, fmt: ExportFormat) -> Path:
    """Next to the input: "list.csv" -> "list.verified.csv" ("list.json" with csv -> "list.verified.csv")."""
    return input_path.with_name(f"{input_path.stem}.verified.{fmt}")


def summarize(statuses: Iterable[str | None]) -> dict[str, int]:
    """Count per status, most frequent first; a missing status counts as "unverified"."""
    return dict(Counter(status or "unverified" for status in statuses).most_common())


def result_flags(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """The main flags of a Bouncer result object, None where absent."""
    return {flag: _dig(raw or {}, paths) for flag, paths in _FLAG_PATHS.items()}


def escape_formula(value: str) -> str:
    """Prefix a quote to a cell a spreadsheet would run as a formula, so it is shown as text instead."""
    return "'" + value if value.startswith(_FORMULA_PREFIXES) else value


async def _write_csv(rows: AsyncIterable[ExportRow], out: TextIO, extra_columns: Sequence[str] | None) -> int:
    iterator = aiter(rows)
    head = await _take(iterator, 0 if extra_columns is not None else HEADER_LOOKAHEAD)
    extras = list(extra_columns) if extra_columns is not None else _first_seen_keys(head)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "name", *extras, *RESULT_COLUMNS])
    written, dropped = 0, set[str]()
    for row in head:
        writer.writerow(_csv_cells(row, extras, dropped))
        written += 1
    async for row in iterator:
        writer.writerow(_csv_cells(row, extras, dropped))
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
        keys.update(dict.fromkeys(row.extra or {}))
    return [key for key in keys if key not in ("email", "name", *RESULT_COLUMNS)]


def _csv_cells(row: ExportRow, extras: Sequence[str], dropped: set[str]) -> list[str]:
    extra = row.extra or {}
    dropped.update(key for key in extra if key not in extras)
    flags = result_flags(row.raw)
    values: list[object] = [row.email, row.name, *(extra.get(k) for k in extras), row.status, row.reason, row.score]
    verified = row.verified_at.isoformat() if row.verified_at is not None else None
    values += [*(flags[flag] for flag in FLAG_COLUMNS), row.state, row.source, verified]
    return [_cell(value) for value in values]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return str(value)  # our own numbers (score, toxicity): a negative one is not a formula
    return escape_formula(str(value))


def _json_object(row: ExportRow) -> dict[str, Any]:
    return {
        "email": row.email,
        "name": row.name,
        "row_number": row.row_number,
        "extra": dict(row.extra or {}),
        "state": row.state,
        "status": row.status,
        "reason": row.reason,
        "score": row.score,
        "source": row.source,
        "verified_at": row.verified_at.isoformat() if row.verified_at is not None else None,
        **result_flags(row.raw),
        "result": dict(row.raw) if row.raw is not None else None,
    }


def _dig(raw: Mapping[str, Any], paths: tuple[tuple[str, ...], ...]) -> Any:
    for path in paths:
        node: Any = raw
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is not None:
            return node
    return None


async def iter_export(rows: AsyncIterable[ExportRow], fmt: StreamFormat) -> AsyncIterator[str]:
    """The export of `rows` as text pieces of up to PIECE_ROWS rows each: the same CSV (formula-guarded) and
    JSON as write_export, or NDJSON (one object a line, the JSON export's objects)."""
    if fmt not in ("csv", "json", "ndjson"):
        raise ValueError(f"unknown export format {fmt!r}; use csv, json or ndjson")
    iterator = aiter(rows)
    head = await _take(iterator, HEADER_LOOKAHEAD if fmt == "csv" else 0)
    extras = _first_seen_keys(head)
    buffer = io.StringIO()
    line = _piece_writer(fmt, buffer, extras)
    buffer.write({"csv": "", "json": "[", "ndjson": ""}[fmt])
    count = 0
    for row in head:
        line(row, count)
        count += 1
    async for row in iterator:
        line(row, count)
        count += 1
        if count % PIECE_ROWS == 0:
            yield _drain(buffer)
    buffer.write({"csv": "", "json": "\n]\n" if count else "]\n", "ndjson": ""}[fmt])
    yield _drain(buffer)


def _piece_writer(fmt: StreamFormat, buffer: io.StringIO, extras: Sequence[str]) -> Any:
    """A function writing one row (and its position) to `buffer` in `fmt`; the CSV header goes out now."""
    if fmt == "csv":
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["email", "name", *extras, *RESULT_COLUMNS])
        dropped: set[str] = set()
        return lambda row, _: writer.writerow(_csv_cells(row, extras, dropped))

    def json_line(row: ExportRow, index: int) -> None:
        text = json.dumps(_json_object(row), ensure_ascii=False, default=str)
        buffer.write(text + "\n" if fmt == "ndjson" else ("," if index else "") + "\n" + text)

    return json_line


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
