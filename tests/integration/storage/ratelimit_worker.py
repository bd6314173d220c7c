"""One worker process of test_ratelimit's multi-process tests: spins on acquire() against a shared database.

Run as `python ratelimit_worker.py WORKER LIMIT WINDOW DURATION` with the database URL in BQ_RATELIMIT_URL (kept
out of argv, where `ps` would show a password); BQ_RATELIMIT_PLAIN_ENGINE=1 uses a bare create_async_engine
instead of make_engine (no BEGIN IMMEDIATE), to prove the limiter does not lean on it. It connects, prints
"ready" and waits for a line on stdin so every process starts together; then for DURATION seconds it takes every
slot it can, sleeping at most MAX_SLEEP_SECONDS between refusals so the budget stays saturated, and prints its
counts as one JSON line at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.ratelimit import Budget, RateLimiter

MAX_SLEEP_SECONDS = 0.02


def _engine(url: str) -> AsyncEngine:
    if os.environ.get("BQ_RATELIMIT_PLAIN_ENGINE") == "1":
        return create_async_engine(url, connect_args={"timeout": 30})
    return make_engine(url)


async def run(url: str, worker: str, limit: int, window: float, duration: float) -> dict[str, int]:
    engine = _engine(url)
    try:
        limiter = RateLimiter(engine, {"batch": Budget(limit, window)}, worker=worker)
        await limiter.usage()  # connect now, so start-up cost stays out of the measured run
        print("ready", flush=True)
        sys.stdin.readline()
        allowed = denied = 0
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            decision = await limiter.acquire(["batch"], "create")
            if decision.allowed:
                allowed += 1
            else:
                denied += 1
                await asyncio.sleep(min(decision.wait_ms / 1000, MAX_SLEEP_SECONDS))
        return {"allowed": allowed, "denied": denied}
    finally:
        await engine.dispose()


def main() -> None:
    worker, limit, window, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    counts = asyncio.run(run(os.environ["BQ_RATELIMIT_URL"], worker, limit, window, duration))
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
