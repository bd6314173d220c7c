"""The CLI as a new user meets it, in real processes: outputs that mirror inputs and never overwrite, private
files, one-line errors with the right exit codes (no traceback, no "Exception ignored"), progress on stderr only
when it is a terminal, and the conventions (--version, help that shows whole variable names)."""

from __future__ import annotations

import csv
import os
import pty
import re
import select
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from pipeline_support import CLI, cli_env, run_cli_output

pytestmark = [pytest.mark.redis]


@pytest.fixture
def env(tmp_path: Path, redis_url: str, queue_prefix: str) -> dict[str, str]:
    """Shared Redis under the test's prefix, and the default SQLite file in a state directory of the test's."""
    return cli_env(
        {"REDIS_URL": redis_url, "QUEUE_PREFIX": queue_prefix, "BOUNCER_QUEUE_STATE_DIR": tmp_path / "state"}
    )


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The common umask, so the modes asserted are ours, not a stricter umask's."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_clean(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert "Exception ignored" not in stderr
    assert "Unclosed" not in stderr


ROWS = [["Ann", "Ann@Example.COM", "=1+1"], ["Nobody", "", "Rome"], ["Bob", "bob@example.org", ""]]


@pytest.mark.slow
def test_verify_a_headerless_tsv_with_embedded_valkey_keeps_every_row_and_every_file_private(
    tmp_path: Path, umask_022: None
) -> None:
    source = tmp_path / "leads.tsv"
    source.write_text("".join("\t".join(row) + "\n" for row in ROWS), encoding="utf-8")
    env = cli_env({"BOUNCER_QUEUE_STATE_DIR": tmp_path / "state"})  # no Redis, no database: embedded ones

    done = run_cli_output(["verify", str(source), "--no-header", "--column", "2"], env, tmp_path)

    assert_clean(done.stderr)
    target = tmp_path / "leads.verified.tsv"
    with target.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    assert rows[0][:3] == ["column_1", "column_2", "column_3"]
    guarded = [[cell if not cell.startswith("=") else "'" + cell for cell in row] for row in ROWS]
    assert [row[:3] for row in rows[1:]] == guarded  # untouched but for the formula guard
    assert [row[3:5] for row in rows[1:]][1] == ["skipped", "no email"]
    assert "1 row skipped (no address): row 2" in done.stderr
    state = tmp_path / "state"
    assert mode(state) == 0o700
    assert mode(state / "bouncer-queue.db") == 0o600
    assert mode(state / "valkey") == 0o700
    valkey_files = [p for p in (state / "valkey").rglob("*") if p.is_file() and not p.is_socket()]
    assert valkey_files and {mode(p) for p in valkey_files} == {0o600}
    assert mode(target) == 0o600

    again = run_cli_output(["verify", str(source), "--no-header"], env, tmp_path, exit_code=1)

    assert "leads.verified.tsv already exists; pass --force" in again.stderr
    assert_clean(again.stderr)
    forced = run_cli_output(["verify", str(source), "--no-header", "--force", "--format", "json"], env, tmp_path)
    assert (tmp_path / "leads.verified.json").exists() and "results written" in forced.stdout


@pytest.mark.slow
def test_verify_an_xlsx_writes_an_xlsx_with_the_input_cells(tmp_path: Path, env: dict[str, str]) -> None:
    book = Workbook()
    book.active.title = "Contacts"
    for row in [["Email", "Name", "Visits"], ["ann@example.com", "Ann", 3], [None, "Nobody", 1]]:
        book.active.append(row)
    book.create_sheet("Notes").append(["nothing here"])
    book.save(tmp_path / "contacts.xlsx")

    done = run_cli_output(["verify", str(tmp_path / "contacts.xlsx"), "--sheet", "Contacts"], env, tmp_path)

    assert_clean(done.stderr)
    book = load_workbook(tmp_path / "contacts.verified.xlsx", read_only=True)
    out = list(book.active.iter_rows(values_only=True))
    book.close()
    assert out[0][:4] == ("Email", "Name", "Visits", "status")
    assert [row[:3] for row in out[1:]] == [("ann@example.com", "Ann", "3"), (None, "Nobody", "1")]
    assert out[2][3] == "skipped"


def _write(tmp_path: Path, name: str, content: bytes) -> str:
    (tmp_path / name).write_bytes(content)
    return name


BAD_INPUTS = [
    pytest.param(["verify", "{headerless}"], 1, "--no-header", id="headerless-csv-without-no-header"),
    pytest.param(["verify", "{good}", "--column", "0"], 1, "a number from 1 to 2", id="column-0"),
    pytest.param(["verify", "{dat}"], 1, "--input-format", id="unknown-extension"),
    pytest.param(["verify", "{cp1252}"], 1, "--encoding cp1252", id="cp1252"),
    pytest.param(["verify", "{zip}"], 1, "cannot read the workbook", id="not-a-workbook"),
    pytest.param(["verify", "{good}", "--sheet", "2"], 1, "--sheet applies to .xlsx", id="sheet-on-csv"),
    pytest.param(["verify", "{broken}"], 1, "unbalanced quote", id="broken-quoting-after-many-rows"),
    pytest.param(["verify", "{good}", "--format", "xml"], 2, "'xml' is not one of", id="bad-format"),
    pytest.param(["verify", "{good}", "--output", "{tmp}"], 1, "is a directory", id="output-is-a-directory"),
    pytest.param(["submit", "{broken}"], 1, "unbalanced quote", id="submit-broken-quoting"),
    pytest.param(["submit", "{headerless}", "--column", "9", "--no-header"], 1, "a number from 1 to 2", id="column-9"),
    pytest.param(["submit", "{good}", "--delay", "99999999999999999999"], 2, "--delay", id="huge-delay"),
    pytest.param(["submit", "{good}", "--delay", "-1"], 2, "--delay", id="negative-delay"),
    pytest.param(["submit", "{good}", "--max-rows", "0"], 2, "--max-rows", id="max-rows-0"),
    pytest.param(["submit", "{good}", "--priority", "URGENT"], 2, "CRITICAL, HIGH, NORMAL, LOW", id="priority"),
    pytest.param(["results", "no-such-request"], 1, "no request 'no-such-request'", id="unknown-request"),
    pytest.param(["results", "r", "--status", "delivrable"], 2, "valid: deliverable", id="unknown-status"),
    pytest.param(["results", "r", "--format", "xlsx"], 1, "no request 'r'", id="results-xlsx-unknown-request"),
    pytest.param(["cancel", "no-such-request"], 1, "no request 'no-such-request'", id="cancel-unknown"),
    pytest.param(["purge", "nope", "--yes"], 2, "valid queues: email-verification", id="purge-unknown-queue"),
    pytest.param(["workers", "--concurrency", "downloads=3"], 2, "QUEUE=N", id="workers-bad-concurrency"),
    pytest.param(["workers", "--queues", "nope"], 2, "unknown queue nope", id="workers-unknown-queue"),
    pytest.param(["clean-failed", "dead-letter", "--hours", "1e30"], 2, "--hours", id="huge-hours"),
    pytest.param(["stats"], 2, "BATCH_SIZE", id="config-error"),  # BATCH_SIZE=0 below
]


def _inputs(tmp_path: Path) -> dict[str, str]:
    rows = "".join(f"u{n}@example.com,U{n}\n" for n in range(20_000))
    return {
        "headerless": _write(tmp_path, "headerless.csv", b"Ann,ann@example.com\nBob,bob@example.com\n"),
        "good": _write(tmp_path, "good.csv", b"email,name\nann@example.com,Ann\n"),
        "dat": _write(tmp_path, "list.dat", b"ann@example.com\n"),
        "cp1252": _write(tmp_path, "latin.csv", "email,name\nann@example.com,Zoë\n".encode("cp1252")),
        "zip": _write(tmp_path, "fake.xlsx", b"email\nann@example.com\n"),
        "broken": _write(tmp_path, "broken.csv", b"email,name\n" + rows.encode() + b'"x,y\n' + b"a,b\n" * 200),
        "tmp": str(tmp_path),
    }


_HELP: dict[str, str] = {}


def _help(command: str, env: dict[str, str], cwd: Path) -> str:
    if command not in _HELP:
        _HELP[command] = run_cli_output([command, "--help"], env, cwd).stdout
    return _HELP[command]


@pytest.mark.parametrize(("args", "code", "says"), BAD_INPUTS)
def test_a_handled_error_is_one_clear_message_and_its_exit_code(
    tmp_path: Path, env: dict[str, str], args: list[str], code: int, says: str
) -> None:
    files = _inputs(tmp_path)
    argv = [arg.format(**files) for arg in args]
    env["BATCH_SIZE"] = "0" if argv == ["stats"] else "10000"

    done = run_cli_output(argv, env, tmp_path, exit_code=code)

    assert_clean(done.stderr)
    assert says in done.stderr
    command_help = _help(argv[0], env, tmp_path)
    for option in set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", done.stderr)) - {"--help"}:
        assert option in command_help, f"{option} is named but `{argv[0]}` has no such option"


def test_debug_shows_the_traceback(tmp_path: Path, env: dict[str, str]) -> None:
    _inputs(tmp_path)

    done = run_cli_output(["--debug", "verify", "headerless.csv"], env, tmp_path, exit_code=1)

    assert "Traceback" in done.stderr and "InputError" in done.stderr


def test_version_and_help_with_whole_variable_names(tmp_path: Path, env: dict[str, str]) -> None:
    from bouncer_queue import __version__

    assert run_cli_output(["--version"], env, tmp_path).stdout.strip() == f"bouncer-queue {__version__}"
    narrow = {**env, "COLUMNS": "80"}
    help_text = " ".join(run_cli_output(["simulator", "--help"], narrow, tmp_path).stdout.split())
    for name in ("BOUNCER_SIMULATOR_BATCH_FAIL_RATE", "BOUNCER_SIMULATOR_RETRY_AFTER_HEADER", "BOUNCER_SIMULATOR_SEED"):
        assert name in help_text
    assert "…" not in help_text


def _read_until(fd: int, wanted: str, timeout: float = 60.0) -> str:
    """Read a terminal's output until `wanted` shows (a bound on waiting, not a timing assertion)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted.encode() not in seen:
        assert time.monotonic() < deadline, f"{wanted!r} not seen; got {seen.decode(errors='replace')[-2000:]!r}"
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the process ended and closed the terminal
                break
    return seen.decode(errors="replace")


def test_progress_goes_to_a_terminal_stderr_and_waiting_says_when_no_worker_runs(
    tmp_path: Path, env: dict[str, str]
) -> None:
    (tmp_path / "list.csv").write_text("email\n" + "".join(f"u{n}@example.com\n" for n in range(3000)))
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(CLI), "submit", "list.csv", "--wait"],
        env={**env, "COLUMNS": "120"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    try:
        shown = _read_until(leader, "no workers are running")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            stdout, _ = process.communicate(timeout=60)
        finally:
            process.kill()  # a no-op once it exited; a command left running would load the tests after this one
            os.close(leader)

    assert "storing the list" in shown and "verifying" in shown
    assert b"storing" not in stdout and b"verifying" not in stdout  # stdout stays for the answer


def test_no_progress_when_stderr_is_not_a_terminal(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "list.csv").write_text("email\n" + "".join(f"u{n}@example.com\n" for n in range(3000)))

    done = run_cli_output(["submit", "list.csv"], env, tmp_path)

    assert re.fullmatch(r"[0-9a-f]{32}\n", done.stdout)  # the request id, alone
    assert "storing" not in done.stderr and "3000 addresses in 1 batches" in done.stderr

    exported = run_cli_output(["results", done.stdout.strip(), "--output", "out.csv"], env, tmp_path)

    assert "exporting" not in exported.stderr and "3000 rows written to out.csv" in exported.stderr
    assert mode(tmp_path / "out.csv") & 0o077 == 0
    refused = run_cli_output(["results", done.stdout.strip(), "--output", "out.csv"], env, tmp_path, exit_code=1)
    assert "out.csv already exists; pass --force" in refused.stderr
