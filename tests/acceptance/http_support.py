"""A running HTTP stack for the API, webhook and browser tests: `bouncer-queue serve` and `bouncer-queue workers`
as subprocesses on a PostgreSQL database of their own, the simulator on a port, and one token per scope.

`HttpStack` is built once per test session (starting it costs seconds) and torn down at the end: the
processes get SIGTERM, the database is dropped, the Redis prefix's keys are deleted. Tests that change shared
state (pause a queue) put it back.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from ops_support import eventually, free_port
from pipeline_support import (
    API_KEY,
    CLI,
    WorkerProcess,
    delete_prefix_keys,
    run_cli,
    worker_env,
)
from pipeline_support import (
    _autocommit as autocommit,
)
from sqlalchemy.engine import make_url

from bouncer_queue.simulator import SimulatorConfig, SimulatorServer
from bouncer_queue.storage import migrate

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"bouncer-queue-webhook-test-key!!").decode()
MAX_UPLOAD_BYTES = 200_000


class ServeProcess:
    """`bouncer-queue serve` on a free port, its output in a file."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = cwd / "serve.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [str(CLI), "serve", "--port", str(self.port)], env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, self.output()
            try:
                return httpx.get(f"{self.url}/api/v1/openapi.json", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        eventually(ready, timeout=60)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]


@dataclass
class HttpStack:
    """What the tests talk to: the API's URL, a token per scope, the environment of CLI calls, the database."""

    url: str
    tokens: dict[str, str]
    env: dict[str, str]
    cwd: Path
    database_url: str
    simulator: SimulatorServer
    serve: ServeProcess
    workers: WorkerProcess
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self, scope: str | None = "admin") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[scope]}"} if scope else {}
        return httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=30)

    def cli(self, *args: str) -> str:
        return run_cli(list(args), self.env, self.cwd)

    def sql(self, statement: str, **params: Any) -> list[Any]:
        from pipeline_support import sql

        return asyncio.run(sql(self.database_url, statement, **params))

    def wait_done(self, request_id: str, scope: str = "read", timeout: float = 90) -> dict[str, Any]:
        with self.client(scope) as api:
            return eventually(lambda: (d := api.get(f"/requests/{request_id}").json())["done"] and d, timeout=timeout)


@contextmanager
def http_stack(postgres_url: str, redis_url: str, tmp: Path) -> Iterator[HttpStack]:
    """Start everything; stop and clean it all on exit."""
    prefix = "{bqhttp-" + uuid.uuid4().hex[:12] + "}"
    with ExitStack() as stack:
        database_url = stack.enter_context(_database(postgres_url))
        asyncio.run(migrate.upgrade(database_url))
        stack.callback(lambda: asyncio.run(delete_prefix_keys(redis_url, prefix)))
        config = SimulatorConfig(api_keys=(API_KEY,), speed=5_000.0, queue_delay_seconds=0.1)
        simulator = stack.enter_context(SimulatorServer(config))
        env = _env(database_url, redis_url, prefix, simulator.base_url, tmp)
        tokens = {scope: _token(env, tmp, scope) for scope in ("read", "submit", "admin")}
        workers = WorkerProcess(env, tmp, "workers")
        stack.callback(workers.terminate)
        serve = ServeProcess(env, tmp)
        stack.callback(serve.stop)
        serve.wait_ready()
        yield HttpStack(serve.url, tokens, env, tmp, database_url, simulator, serve, workers)


def _env(database_url: str, redis_url: str, prefix: str, base_url: str, tmp: Path) -> dict[str, str]:
    return worker_env(
        database_url=database_url,
        redis_url=redis_url,
        prefix=prefix,
        base_url=base_url,
        state_dir=tmp / "state",
        batch_size=20,
        poll_interval_seconds=0.3,
        rate_limit_window_seconds=6,
        queue_limit_duration_ms=6000,
        email_verification_limit=0,
        batch_status_limit=0,
        batch_download_limit=0,
        health_check_interval_seconds=1,
        api_max_upload_bytes=MAX_UPLOAD_BYTES,
        webhook_secret=WEBHOOK_SECRET,
        webhook_allow_private="true",
        webhook_backoff_seconds=0.2,
        webhook_interval_seconds=0.3,
        webhook_max_attempts=5,
    )


def _token(env: dict[str, str], cwd: Path, scope: str) -> str:
    out = run_cli(["tokens", "create", "--name", f"test-{scope}", "--scope", scope], env, cwd)
    return out.strip().splitlines()[-1]


@contextmanager
def _database(base_url: str) -> Iterator[str]:
    """A PostgreSQL database of the session's own (as pipeline_support.postgres_database), from sync code."""
    name = f"bq_http_{uuid.uuid4().hex[:12]}"
    asyncio.run(autocommit(base_url, f"CREATE DATABASE {name}"))
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(autocommit(base_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
