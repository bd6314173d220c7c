"""The `bouncer-queue` script's entry point: no collector pass while the commands' code is imported.

Importing every command builds some 140,000 objects, none of them garbage, yet the cyclic collector walked the
growing heap a dozen times meanwhile: ~0.1 s of each command's start (a workers process, every submit). With the
collector off until the imports are done, cli.main then freezes what they built and turns it back on
(ops/collector.py). This module imports nothing itself, so the pause covers all of it.
"""

from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    from bouncer_queue.interfaces import cli

    cli.main()
