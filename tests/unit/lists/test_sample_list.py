"""The bundled sample list: findable from the installed package, regenerable, and flawed in known numbers."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from bouncer_queue.emails import dedup_key, is_valid_syntax
from bouncer_queue.lists import read_list, sample_list_path

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "make_sample.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_sample_is_what_the_script_generates() -> None:
    script = _load_script()

    assert sample_list_path().read_text(encoding="utf-8") == script.render(script.generate())


def test_sample_parses_with_the_expected_flaws() -> None:
    reader = read_list(sample_list_path())
    rows = list(reader)
    keys = [dedup_key(row.email) for row in rows]

    assert (reader.rows_read, reader.rows_yielded, reader.skipped_total) == (3000, 2988, 12)
    assert {skipped.reason for skipped in reader.skipped} == {"no email"}
    assert len(keys) - len(set(keys)) == 60
    assert sum(not is_valid_syntax(row.email) for row in rows) == 12
    assert sum(len(row.extra or {}) < 4 for row in rows) == 6  # rows missing trailing fields
    assert {"deliverable@sandbox.usebouncer.com", "accept-all@sandbox.usebouncer.com"} <= set(keys)
    assert sum(row.email.endswith("@sandbox.usebouncer.com") for row in rows) == 12
