"""The collector settings a command process takes, checked in a process of their own: `freeze` is for good."""

from __future__ import annotations

import subprocess
import sys

from bouncer_queue.ops.collector import YOUNG_GENERATION_THRESHOLD

PROBE = """
import gc
from bouncer_queue.ops import collector
before = gc.get_threshold()
collector.tune_for_bulk_rows()
print(gc.get_freeze_count() > 0, gc.get_threshold()[0], gc.get_threshold()[1:] == before[1:])
"""


def test_a_command_process_freezes_its_imports_and_collects_the_young_less_often() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", str(YOUNG_GENERATION_THRESHOLD), "True"]


def test_the_cli_entry_point_takes_them_before_any_command() -> None:
    probe = "\n".join([
        "import gc, sys",
        "from bouncer_queue.interfaces import cli",
        "sys.argv = ['bq', '--version']",
        "try:\n    cli.main()\nexcept SystemExit:\n    pass",
        "print(gc.get_threshold()[0], gc.get_freeze_count() > 0)",
    ])  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out[-2:] == [str(YOUNG_GENERATION_THRESHOLD), "True"]


def test_the_script_imports_the_commands_without_a_full_collection_and_ends_with_the_collector_on() -> None:
    probe = "\n".join([
        "import gc, sys",
        "from bouncer_queue.interfaces import entry",
        "sys.argv = ['bq', '--version']",
        "try:\n    entry.main()\nexcept SystemExit:\n    pass",
        "print(gc.isenabled(), gc.get_stats()[2]['collections'], gc.get_freeze_count() > 10_000)",
    ])  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out[-3:] == ["True", "0", "True"]
