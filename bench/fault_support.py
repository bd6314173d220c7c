"""Services of the fault benchmark that it may break: its own PostgreSQL cluster, its own Redis, and a fleet of
`bouncer-queue workers` processes with a supervisor's restart.

Nothing here touches the machine's shared services. The PostgreSQL cluster is initialised in a temporary
directory and run as the `postgres` OS user (initdb refuses root) on a free port; Redis is a `redis-server` of
its own on a free port, without persistence, so "restarted empty" is just stop and start.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from redis.asyncio import Redis
from sqlalchemy import text

from bouncer_queue.storage.db import make_engine

CLI = Path(sys.executable).with_name("bouncer-queue")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise SystemExit(f"PostgreSQL's {name} is not installed (looked in /usr/lib/postgresql/*/bin)")
    return found[-1]


def _as_postgres(*args: str) -> None:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *args], check=True, capture_output=True, text=True)


class OwnPostgres:
    """A throw-away PostgreSQL cluster on a free port (fsync off: the bench measures outcomes, not durability)."""

    def __init__(self, root: Path) -> None:
        self.data = root / "pgdata"
        self.port = free_port()
        self.running = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        if not self.data.exists():
            self.data.mkdir(parents=True)
            if os.geteuid() == 0:
                shutil.chown(self.data, "postgres", "postgres")
            _as_postgres(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        _as_postgres(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.data / "log"), "-w", "start"
        )
        self.running = True

    def stop(self) -> None:
        _as_postgres(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.running = False

    async def create_database(self, name: str) -> str:
        engine = make_engine(self.url()).execution_options(isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(f"CREATE DATABASE {name}"))
        finally:
            await engine.dispose()
        return self.url(name)


class OwnRedis:
    """A redis-server of the bench's own, on a free port, with no persistence."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        log = (self.dir / "redis.log").open("ab")
        self.process = subprocess.Popen([*args, "--dir", str(self.dir)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("the bench's redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    async def flushall(self) -> None:
        client = Redis.from_url(self.url)
        try:
            await client.flushall()
        finally:
            await client.aclose()


class Fleet:
    """`count` workers processes; the first serves Bouncer's callbacks. `supervise` restarts any that exited,
    as systemd would; `kill9` SIGKILLs one and starts a replacement."""

    def __init__(self, env: Mapping[str, str], cwd: Path, count: int, callback_port: int) -> None:
        self.env, self.cwd, self.callback_port = dict(env), cwd, callback_port
        self.processes: list[subprocess.Popen[bytes]] = [self._start(i) for i in range(count)]
        self.restarts = 0

    def _start(self, index: int) -> subprocess.Popen[bytes]:
        env = dict(self.env)
        if index == 0:
            env["CALLBACK_PORT"] = str(self.callback_port)
        log = (self.cwd / f"workers-{index}.log").open("ab")
        return subprocess.Popen([str(CLI), "workers"], env=env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)

    def supervise(self) -> None:
        for index, process in enumerate(self.processes):
            if process.poll() is not None:
                self.processes[index] = self._start(index)
                self.restarts += 1

    def kill9(self, index: int) -> None:
        process = self.processes[index]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        self.processes[index] = self._start(index)

    async def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                await asyncio.to_thread(process.wait, 60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
