from __future__ import annotations

from bouncer_queue.interfaces.cli import main

main()
