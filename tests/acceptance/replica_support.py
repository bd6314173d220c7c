"""A PostgreSQL primary and its streaming replica, each its own cluster on a free port in a temporary directory.

`streaming_replica()` runs initdb, starts the primary, clones it with `pg_basebackup -R` (a standby that
follows the primary's WAL) and starts the replica; both stop on exit. initdb refuses root, so as root every
PostgreSQL command runs as the `postgres` OS user. The shared server on 5432 is never touched.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ops_support import free_port


@dataclass(frozen=True)
class Replicated:
    primary_url: str
    replica_url: str
    replica_port: int
    bin_dir: Path

    def replica_sql(self, sql: str) -> str:
        return _psql(self.bin_dir, self.replica_port, sql)


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("initdb is not installed (Debian package postgresql); CI needs it")
        pytest.skip("initdb is not installed (Debian package postgresql)")
    return Path(on_path).parent


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _run(args: list[str]) -> str:
    done = subprocess.run(_as_postgres(args), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def _psql(bin_dir: Path, port: int, sql: str) -> str:
    return _run([str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-tAc", sql]).strip()


def _start(bin_dir: Path, data: Path, port: int, log: Path) -> None:
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "120", "start"])


def _stop(bin_dir: Path, data: Path) -> None:
    with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])


@contextlib.contextmanager
def streaming_replica() -> Iterator[Replicated]:
    """Start a primary and a streaming replica of it; yield their URLs (database `postgres`)."""
    bin_dir = _bin_dir()
    # Not under pytest's tmp_path: its parents are private to root, and the postgres user must reach the clusters.
    workdir = Path(tempfile.mkdtemp(prefix="bq-replica-"))
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
    try:
        with _clusters(bin_dir, workdir) as replicated:
            yield replicated
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def _clusters(bin_dir: Path, workdir: Path) -> Iterator[Replicated]:
    primary, replica = workdir / "primary", workdir / "replica"
    primary_port, replica_port = free_port(), free_port()
    _run([str(bin_dir / "initdb"), "-D", str(primary), "-A", "trust", "-U", "postgres", "--no-sync"])
    with (primary / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("wal_level = replica\nmax_wal_senders = 4\nfsync = off\n")
    _start(bin_dir, primary, primary_port, workdir / "primary.log")
    try:
        _run([str(bin_dir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary_port), "-U", "postgres",
              "-D", str(replica), "-R", "-X", "stream"])  # fmt: skip
        _start(bin_dir, replica, replica_port, workdir / "replica.log")
        try:
            _wait_streaming(bin_dir, primary_port)
            yield Replicated(
                f"postgresql://postgres@127.0.0.1:{primary_port}/postgres",
                f"postgresql://postgres@127.0.0.1:{replica_port}/postgres",
                replica_port,
                bin_dir,
            )
        finally:
            _stop(bin_dir, replica)
    finally:
        _stop(bin_dir, primary)


def _wait_streaming(bin_dir: Path, primary_port: int) -> None:
    deadline = time.monotonic() + 120
    while _psql(bin_dir, primary_port, "select count(*) from pg_stat_replication where state = 'streaming'") != "1":
        assert time.monotonic() < deadline, "the replica never started streaming"
        time.sleep(0.2)
