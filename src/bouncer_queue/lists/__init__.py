"""Input lists and result exports: reading users' CSV/TXT/JSON lists as rows, and writing verdicts back out.

`read_list` is the source of the ingest stage; `write_export` is what the `export` command writes.
"""

from __future__ import annotations

from bouncer_queue.lists.export import (
    FLAG_COLUMNS,
    RESULT_COLUMNS,
    ExportFormat,
    default_output_path,
    escape_formula,
    result_flags,
    summarize,
    write_export,
)
from bouncer_queue.lists.readers import LIST_FORMATS, MAX_SKIPPED_KEPT, ListFormat, ListReader, read_list
from bouncer_queue.lists.rows import SkippedRow
from bouncer_queue.lists.sample import sample_list_path

__all__ = [
    "FLAG_COLUMNS",
    "LIST_FORMATS",
    "MAX_SKIPPED_KEPT",
    "RESULT_COLUMNS",
    "ExportFormat",
    "ListFormat",
    "ListReader",
    "SkippedRow",
    "default_output_path",
    "escape_formula",
    "read_list",
    "result_flags",
    "sample_list_path",
    "summarize",
    "write_export",
]
