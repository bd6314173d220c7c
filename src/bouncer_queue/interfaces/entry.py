"""The `bouncer-queue` script's entry point: no collector pass while the commands' code is imported.

Importing every command builds some 140,000 objects, none of them garbage, yet the cyclic collector ran two full
collections over the growing heap meanwhile, and many young ones: 0.1-0.25 s of each command's start (a workers
process, every submit; `bouncer-queue --version` took 0.72-0.83 s, now 0.56-0.57 s). With the collector off until
the imports are done, cli.main then freezes what they built and turns it back on (ops/collector.py). This module
imports nothing itself, so the pause covers all of it.
"""

from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    from bouncer_queue.interfaces import cli

    cli.main()
