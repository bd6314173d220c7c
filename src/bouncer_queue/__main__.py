from __future__ import annotations

from bouncer_queue.interfaces.entry import main

main()
