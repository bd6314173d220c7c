"""Private files: the state directory, the database, the Valkey data and the result files hold people's email
lists, so they are created readable by their owner only (directories 0700, files 0600).

The user's umask still applies on top, so a stricter one (0077 already, or 0277) wins. A state directory or
database file left readable by an older version is tightened when it is next used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: The umask given to child processes that write our data (the embedded Valkey).
PRIVATE_UMASK = 0o077


def current_umask() -> int:
    """The process umask (os.umask can only be read by setting it; it is set straight back)."""
    mask = os.umask(PRIVATE_UMASK)
    os.umask(mask)
    return mask


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) as 0700, or tighten it to that if it exists."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    _tighten(path, PRIVATE_DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty as 0600 if missing, or tighten it to that if it exists."""
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT, PRIVATE_FILE_MODE))  # read-only: a 0400 file stays openable
    _tighten(path, PRIVATE_FILE_MODE)
    return path


def open_private(path: Path, *, binary: bool = False) -> TextIO:
    """Open `path` for writing, truncated, created 0600 (umask permitting); text mode is UTF-8 with no newline
    translation (what `csv` needs)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    _tighten(path, PRIVATE_FILE_MODE)
    if binary:
        return os.fdopen(fd, "wb")  # type: ignore[return-value]
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


def restrict_child_umask() -> None:
    """Give a child process (between fork and exec) a umask that keeps its files private."""
    os.umask(os.umask(PRIVATE_UMASK) | PRIVATE_UMASK)


def _tighten(path: Path, mode: int) -> None:
    wanted = mode & ~current_umask()
    if path.stat().st_mode & 0o777 & ~wanted:  # only ever remove permissions, never add any
        path.chmod(path.stat().st_mode & 0o777 & wanted)
