"""`workers --queues/--concurrency` become settings overrides; private files are 0600/0700 under the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from bouncer_queue.config import Settings
from bouncer_queue.files import open_private, private_dir, private_file
from bouncer_queue.interfaces.cli_jobs import worker_overrides


def test_queues_and_concurrency_override_the_settings() -> None:
    overrides = worker_overrides("batch-download,cleanup-tasks", ["batch-download=7", "cleanup-tasks=2"])
    settings = Settings(**overrides)  # type: ignore[arg-type]

    tuning = settings.queue_tuning()

    assert list(tuning) == ["batch-download", "cleanup-tasks"]
    assert (tuning["batch-download"].concurrency, tuning["cleanup-tasks"].concurrency) == (7, 2)


@pytest.mark.parametrize("item", ["downloads=3", "batch-download", "batch-download=0", "batch-download=x"])
def test_a_bad_concurrency_item_is_a_usage_error(item: str) -> None:
    with pytest.raises(typer.BadParameter, match="QUEUE=N"):
        worker_overrides(None, [item])


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_paths_are_owner_only_and_loose_ones_are_tightened(tmp_path: Path, umask: None) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    (loose / "db").write_text("x")
    os.chmod(loose / "db", 0o644)

    private_dir(loose)
    private_file(loose / "db")
    with open_private(tmp_path / "out.csv") as handle:
        handle.write("a\n")

    assert (_mode(loose), _mode(loose / "db"), _mode(tmp_path / "out.csv")) == (0o700, 0o600, 0o600)
    assert _mode(private_dir(tmp_path / "new" / "state")) == 0o700


def test_a_stricter_umask_wins_and_nothing_is_ever_loosened(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        strict = tmp_path / "read-only"
        strict.write_text("x")
        os.chmod(strict, 0o400)
        private_file(strict)
        with open_private(tmp_path / "out.csv") as handle:
            handle.write("a\n")
    finally:
        os.umask(old)

    assert (_mode(strict), _mode(tmp_path / "out.csv")) == (0o400, 0o600)
