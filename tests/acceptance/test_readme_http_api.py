"""The README's HTTP API walkthrough works as written: its commands, taken from README.md, run with the real
`bouncer-queue` script and the real `curl` against a running serve + workers stack, and each answers what its
comment there says."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from http_support import HttpStack
from ops_support import eventually

from bouncer_queue.simulator.results import expected_result

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

README = Path(__file__).parents[2] / "README.md"
README_URL = "http://127.0.0.1:8000"
# No special-use domain (.test, ...): the syntax pre-filter would answer it locally as undeliverable.
LEADS = ["lead.1@example.com", "lead.2@gmail.com", "lead.3@acme.example", "lead.4@dead-domain.example"]


def walkthrough() -> list[str]:
    """The lines of the first bash block under "## The HTTP API", continuations joined."""
    section = README.read_text(encoding="utf-8").split("## The HTTP API", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match, "README.md has no bash block under '## The HTTP API'"
    joined = match.group(1).replace("\\\n", " ")
    return [line for line in joined.splitlines() if shlex.split(line, comments=True)]


def run(argv: list[str], cwd: Path, **replace: str) -> str:
    """One curl command of the README, with the walkthrough's placeholders filled in."""
    assert argv[0] == "curl"
    for old, new in replace.items():
        argv = [arg.replace(old, new) for arg in argv]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=True, timeout=60).stdout


def test_readme_http_api_walkthrough(http: HttpStack, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    serve, export, *curls = walkthrough()
    assert shlex.split(serve, comments=True)[:2] == ["bouncer-queue", "serve"]  # the stack already serves

    # `export TOKEN=$(...)`: the README's own command, run by bash with our bouncer-queue on the PATH.
    inner = re.fullmatch(r"export TOKEN=\$\((.*)\)\s*(#.*)?", export.strip())
    assert inner, export
    path = f"{Path(sys.executable).parent}{os.pathsep}{http.env.get('PATH', '')}"
    made = subprocess.run(
        ["bash", "-c", inner.group(1)], env={**http.env, "PATH": path}, cwd=http.cwd, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("bq_")

    (tmp_path / "leads.csv").write_text("email,company\n" + "".join(f"{e},Acme\n" for e in LEADS), encoding="utf-8")
    create, upload, status, results, queues = (shlex.split(line, comments=True) for line in curls)
    fill: dict[str, Any] = {"$TOKEN": token, README_URL: http.url}

    created = json.loads(run(create, tmp_path, **fill))
    assert created["created"] is True and created["total_emails"] == 2
    assert created["status_url"] == f"/api/v1/requests/{created['request_id']}"
    uploaded = json.loads(run(upload, tmp_path, **fill))
    assert uploaded["total_emails"] == len(LEADS)

    for request_id in (created["request_id"], uploaded["request_id"]):
        fill["REQUEST_ID"] = request_id
        done = eventually(lambda: (d := json.loads(run(status, tmp_path, **fill)))["done"] and d, timeout=90)
        assert done["progress"]["fraction"] == 1.0 and done["credits_used"] >= 1

    run(results, tmp_path, **fill)  # the README writes verified.csv, for the last request: the upload
    rows = list(csv.DictReader(io.StringIO((tmp_path / "verified.csv").read_text(encoding="utf-8"))))
    wanted = [e for e in LEADS if expected_result(e, "bouncer-simulator")["status"] in ("deliverable", "risky")]
    assert 0 < len(wanted) < len(LEADS)  # the status filter leaves something out
    assert [r["email"] for r in rows] == wanted and {r["company"] for r in rows} == {"Acme"}

    listed = json.loads(run(queues, tmp_path, **fill))
    assert {q["name"] for q in listed} >= {"email-verification", "batch-status-check", "batch-download"}
