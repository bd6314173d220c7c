"""The cyclic garbage collector's settings for a process that moves lists of millions of rows.

Each command process takes them once it has imported its code (interfaces/cli.py:main); bench/storage_bulk.py
takes them too, so its figures are those of the commands. Not for a process that runs many things in turn (the
test suite): what `freeze` keeps is never collected again.
"""

from __future__ import annotations

import gc

#: New container objects between two collections of the youngest generation (Python's default: 700).
YOUNG_GENERATION_THRESHOLD = 10_000


def tune_for_bulk_rows() -> None:
    """Freeze what exists now and collect the young generation less often; the collector is on afterwards (the
    script's entry point turns it off while the commands are imported: interfaces/entry.py)."""
    # What the imports built lives as long as the process: frozen, it is left out of every full collection.
    # A million-row submit triggers dozens of those, and walking the imported objects each time cost ~2 s.
    gc.freeze()
    # The young generation is collected every 700 new container objects by default: storing a list or a download
    # builds tens of thousands of rows (tuples, dicts) that outlive a few such passes each, and collecting them
    # took some 5 % of a submit's CPU (1,650 passes for 300,000 rows). Fewer, larger passes reclaim the same.
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])
    gc.enable()
