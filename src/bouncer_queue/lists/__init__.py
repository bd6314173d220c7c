"""Input lists and result exports: reading users' CSV/TSV/TXT/JSON/XLSX lists as rows, and writing them back out
with their verdicts.

`read_list` is the source of the ingest stage; `write_export` and `write_xlsx` are what `verify` and `results` write.
"""

from __future__ import annotations

from bouncer_queue.lists.export import (
    EXPORT_FORMATS,
    FLAG_COLUMNS,
    RESULT_COLUMNS,
    ExportFormat,
    default_output_path,
    escape_formula,
    export_format_for,
    input_row,
    result_flags,
    result_names,
    summarize,
    write_export,
    write_xlsx,
)
from bouncer_queue.lists.readers import (
    LIST_FORMATS,
    MAX_SKIPPED_KEPT,
    ListFormat,
    ListReader,
    describe_skipped,
    read_list,
)
from bouncer_queue.lists.rows import SkippedRow
from bouncer_queue.lists.sample import sample_list_path

__all__ = [
    "EXPORT_FORMATS",
    "FLAG_COLUMNS",
    "LIST_FORMATS",
    "MAX_SKIPPED_KEPT",
    "RESULT_COLUMNS",
    "ExportFormat",
    "ListFormat",
    "ListReader",
    "SkippedRow",
    "default_output_path",
    "describe_skipped",
    "escape_formula",
    "export_format_for",
    "input_row",
    "read_list",
    "result_flags",
    "result_names",
    "sample_list_path",
    "summarize",
    "write_export",
    "write_xlsx",
]
