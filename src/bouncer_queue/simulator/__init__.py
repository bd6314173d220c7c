"""A local stand-in for Bouncer's v1.1 API: same paths, shapes, errors, limits and credits, deterministic results.

Use `create_app(SimulatorState(config, clock=...))` in-process with httpx.ASGITransport, `SimulatorServer` on a
loopback port for end-to-end tests, or `bouncer-queue simulator` from the shell. `expected_result(email, seed)`
gives the answer it returns for any address.
"""

from __future__ import annotations

from bouncer_queue.simulator.app import CSV_COLUMNS, create_app
from bouncer_queue.simulator.callbacks import deliver_callbacks
from bouncer_queue.simulator.clock import ManualClock
from bouncer_queue.simulator.config import SimulatorConfig
from bouncer_queue.simulator.results import SANDBOX_DOMAIN, expected_result, is_sandbox
from bouncer_queue.simulator.server import SimulatorServer, run
from bouncer_queue.simulator.state import SimulatorHTTPError, SimulatorState, fingerprint

__all__ = [
    "CSV_COLUMNS",
    "SANDBOX_DOMAIN",
    "ManualClock",
    "SimulatorConfig",
    "SimulatorHTTPError",
    "SimulatorServer",
    "SimulatorState",
    "create_app",
    "deliver_callbacks",
    "expected_result",
    "fingerprint",
    "is_sandbox",
    "run",
]
