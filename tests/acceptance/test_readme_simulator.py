"""The README's simulator walkthrough works as written: its commands, taken from README.md, run with the real
`bouncer-queue` script and the real `curl`, and each answers what its comment there says."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ops_support import SCRIPT, eventually, free_port

README = Path(__file__).parents[2] / "README.md"
README_PORT = "8025"


def walkthrough() -> list[list[str]]:
    """The commands of the first bash block under "## The simulator", as argument lists."""
    section = README.read_text(encoding="utf-8").split("## The simulator", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match, "README.md has no bash block under '## The simulator'"
    joined = match.group(1).replace("\\\n", " ")
    return [argv for line in joined.splitlines() if (argv := shlex.split(line, comments=True))]


@pytest.fixture
def commands() -> Iterator[list[list[str]]]:
    """The README's curl commands, for a simulator started as the README's first line says, on a free port."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    simulator, *curls = walkthrough()
    assert simulator[:2] == ["bouncer-queue", "simulator"] and simulator[-1] == "&"
    port = str(free_port())
    args = [port if arg == README_PORT else arg for arg in simulator[2:-1]]
    process = subprocess.Popen([str(SCRIPT), "simulator", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        eventually(lambda: _answers(f"http://127.0.0.1:{port}/__simulator/state") or process.poll() is not None)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        yield [[arg.replace(f"127.0.0.1:{README_PORT}", f"127.0.0.1:{port}") for arg in argv] for argv in curls]
    finally:
        process.terminate()
        process.communicate(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def curl(argv: list[str], batch_id: str = "") -> str:
    assert argv[0] == "curl"
    argv = [arg.replace("BATCH_ID", batch_id) for arg in argv]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout


def test_readme_simulator_walkthrough(commands: list[list[str]]) -> None:
    create, status, download_json, download_csv, credits, state = commands

    created: dict[str, Any] = json.loads(curl(create))
    assert created["status"] == "queued" and created["quantity"] == 2
    batch_id = created["batchId"]

    # The README says to poll the status until the batch is completed.
    done = eventually(lambda: (answer := json.loads(curl(status, batch_id)))["status"] == "completed" and answer)
    assert done["batchId"] == batch_id and done["processed"] == 2
    assert set(done["stats"]) >= {"deliverable", "risky", "undeliverable", "unknown"}
    assert done["stats"]["deliverable"] >= 1

    results = json.loads(curl(download_json, batch_id))
    assert isinstance(results, list)
    by_email = {row["email"]: row for row in results}
    assert set(by_email) == {"deliverable@sandbox.usebouncer.com", "jane@example.com"}
    assert by_email["deliverable@sandbox.usebouncer.com"]["status"] == "deliverable"

    rows = list(csv.reader(io.StringIO(curl(download_csv, batch_id))))
    assert rows[0][:4] == ["email", "name", "status", "reason"]
    assert sorted(row[0] for row in rows[1:] if row) == sorted(by_email)
    assert ["jane@example.com", "crm-7"] in [row[:2] for row in rows[1:]]

    balance = json.loads(curl(credits))
    assert set(balance) == {"credits"} and isinstance(balance["credits"], int)

    introspection = json.loads(curl(state))
    assert "credits" in introspection
    assert batch_id in [batch["id"] for batch in introspection["batches"]]
