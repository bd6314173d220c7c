"""Serving the simulator over real HTTP: `SimulatorServer` for tests, `run` for the CLI.

`SimulatorServer` runs uvicorn in a background thread on a free 127.0.0.1 port (bound before the thread
starts, so `.base_url` is known at once) and stops it on exit; it works as a sync or async context manager.
End-to-end tests point the pipeline's `bouncer_api_base_url` at `.base_url`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Self

import uvicorn

from bouncer_queue.simulator.app import create_app
from bouncer_queue.simulator.config import SimulatorConfig
from bouncer_queue.simulator.state import Clock, SimulatorState

_START_TIMEOUT_SECONDS = 15.0


def _uvicorn_config(state: SimulatorState, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(state), host=host, port=port, log_level=log_level, access_log=False, ws="none", lifespan="on"
    )


class SimulatorServer:
    """The simulator on a loopback port, in a daemon thread."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        clock: Clock = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.state = SimulatorState(config, clock=clock)
        self._host, self._port = host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"SimulatorServer(root_url={self.root_url!r})" if self._server else "SimulatorServer(stopped)"

    @property
    def root_url(self) -> str:
        """e.g. http://127.0.0.1:PORT (where /__simulator lives)."""
        if self._server is None:
            raise RuntimeError("SimulatorServer is not started; use it as a context manager or call start()")
        return f"http://{self._host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The Bouncer API root, e.g. http://127.0.0.1:PORT/v1.1."""
        return f"{self.root_url}/v1.1"

    def start(self) -> None:
        """Bind, start uvicorn in a thread, and wait until it accepts connections."""
        if self._server is not None:
            raise RuntimeError("SimulatorServer is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        self._port = sock.getsockname()[1]
        server = uvicorn.Server(_uvicorn_config(self.state, self._host, self._port, "warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="bouncer-simulator", daemon=True)
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the simulator did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for its thread (idempotent)."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=_START_TIMEOUT_SECONDS)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)


def run(host: str, port: int, config: SimulatorConfig) -> None:
    """Serve the simulator in the foreground until interrupted (the `simulator` CLI command)."""
    state = SimulatorState(config)
    uvicorn.Server(_uvicorn_config(state, host, port, "info")).run()
