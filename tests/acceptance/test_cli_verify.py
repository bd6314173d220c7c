"""`bouncer-queue verify`, the main job in one command, as a user runs it: no API key (so the simulator, said
plainly), a database it has never seen (so it migrates it), a list with a bad row; results beside the input."""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline_support import cli_env, run_cli_output


def test_verify_runs_the_whole_job_and_writes_the_results_beside_the_input(
    tmp_path: Path, redis_url: str, queue_prefix: str
) -> None:
    listing = tmp_path / "leads.csv"
    rows = ["email,name,company"]
    rows += [f"person{n}@example.com,Person {n},Acme" for n in range(40)]
    rows += ["deliverable@sandbox.usebouncer.com,Sandbox,Bouncer", ",No Email,Nowhere"]
    listing.write_text("\n".join(rows) + "\n", encoding="utf-8")
    env = cli_env(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}",  # explicit and never migrated
            "REDIS_URL": redis_url,
            "QUEUE_PREFIX": queue_prefix,
            "BOUNCER_QUEUE_STATE_DIR": tmp_path / "state",
            "BATCH_SIZE": 25,
        }
    )
    done = run_cli_output(["verify", str(listing)], env, tmp_path)

    assert "local Bouncer simulator" in done.stderr
    assert "results by status" in done.stdout
    assert "1 row skipped (no address): row 43" in done.stderr
    result_file = tmp_path / "leads.verified.csv"
    with result_file.open(encoding="utf-8", newline="") as handle:
        exported = list(csv.DictReader(handle))
    assert len(exported) == 42  # every row; the one without an address comes back skipped, with its reason
    assert (exported[-1]["name"], exported[-1]["status"], exported[-1]["reason"]) == ("No Email", "skipped", "no email")
    assert {r["state"] for r in exported[:-1]} == {"completed"}
    assert all(r["status"] in {"deliverable", "risky", "undeliverable", "unknown"} for r in exported[:-1])
    sandbox = next(r for r in exported if r["email"] == "deliverable@sandbox.usebouncer.com")
    assert (sandbox["status"], sandbox["company"]) == ("deliverable", "Bouncer")
