"""Health probe benchmark: `check_health` reading the recorded credits (what `bouncer-queue health` does) against
`check_health(live=True)` (asks Bouncer, the old behaviour), and the whole `bouncer-queue health` command.

Runs against the shared Redis (a prefix of its own), a temporary SQLite file and the simulator on a port, with
a Bouncer latency scaled to 0.2 of real. Each figure is the median of --runs calls, wall and CPU seconds.

    .venv/bin/python bench/health_probe.py --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from bouncer_queue.config import Settings
from bouncer_queue.service import check_health
from bouncer_queue.simulator import SimulatorConfig, SimulatorServer
from bouncer_queue.storage import migrate


def _timed(call: Callable[[], Awaitable[object]], runs: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        asyncio.run(call())  # type: ignore[arg-type]
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def _command(env: dict[str, str], runs: int) -> tuple[float, float]:
    script = str(Path(sys.executable).with_name("bouncer-queue"))
    walls, cpus = [], []
    for _ in range(runs):
        before = os.times()
        wall = time.perf_counter()
        subprocess.run([script, "health"], env=env, capture_output=True, check=False)
        walls.append(time.perf_counter() - wall)
        after = os.times()
        cpus.append((after.children_user - before.children_user) + (after.children_system - before.children_system))
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    config = SimulatorConfig(api_keys=("bench-key",), latency_scale=0.2)
    with tempfile.TemporaryDirectory() as tmp, SimulatorServer(config) as simulator:
        env = {
            "REDIS_URL": args.redis_url,
            "QUEUE_PREFIX": "{bench-" + uuid.uuid4().hex[:8] + "}",
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/bench.db",
            "BOUNCER_API_KEY": "bench-key",
            "BOUNCER_API_BASE_URL": simulator.base_url,
            "BOUNCER_QUEUE_STATE_DIR": f"{tmp}/state",
        }
        os.environ.update(env)
        asyncio.run(migrate.upgrade(env["DATABASE_URL"]))
        settings = Settings()
        recorded = _timed(lambda: check_health(settings), args.runs)
        live = _timed(lambda: check_health(settings, live=True), args.runs)
        command = _command(dict(os.environ), args.runs)
    print(f"health, recorded credits: {recorded[0]:.3f} s wall, {recorded[1]:.3f} s CPU (median of {args.runs})")
    print(f"health, --live:           {live[0]:.3f} s wall, {live[1]:.3f} s CPU")
    print(f"bouncer-queue health:     {command[0]:.3f} s wall, {command[1]:.3f} s CPU (process start to exit)")
    print(f"live / recorded wall ratio: {live[0] / recorded[0]:.2f}")


if __name__ == "__main__":
    main()
