"""A local Redis Cluster of three masters, each its own `redis-server --cluster-enabled yes` on a free port, joined
with `redis-cli --cluster create`; the nodes are stopped (by their own pids) on exit. The shared Redis on 6379 is
never touched."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tool_support import require_tool

#: Redis Cluster's bus listens on port + 10000.
_BUS_OFFSET = 10_000


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_ports(count: int) -> list[int]:
    """Ports free for a node and for its cluster bus (port + 10000)."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + _BUS_OFFSET < 65_536 and _free(port + _BUS_OFFSET) and port not in ports:
            ports.append(port)
    return ports


@contextlib.contextmanager
def redis_cluster(workdir: Path, masters: int = 3) -> Iterator[list[int]]:
    """Start the cluster; yield its nodes' ports once `cluster_state:ok`."""
    server = require_tool("redis-server", "Debian package redis-server")
    cli = require_tool("redis-cli", "Debian package redis-tools")
    ports = _cluster_ports(masters)
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            node_dir = workdir / f"node-{port}"
            node_dir.mkdir(parents=True)
            args = [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes"]
            args += ["--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no"]
            args += ["--maxmemory-policy", "noeviction", "--dir", str(node_dir)]
            nodes.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in ports:
            _wait(lambda port=port: _cli(cli, port, "ping") == "PONG")  # type: ignore[misc]
        create = [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0"]
        created = subprocess.run([*create, "--cluster-yes"], capture_output=True, text=True, timeout=120)
        assert created.returncode == 0, created.stdout + created.stderr
        _wait(lambda: all("cluster_state:ok" in _cli(cli, p, "cluster", "info") for p in ports))
        yield ports
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            node.wait(timeout=30)


def _cli(cli: str, port: int, *command: str) -> str:
    done = subprocess.run([cli, "-p", str(port), *command], capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


def _wait(check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the Redis Cluster did not come up"
        time.sleep(0.2)
