"""The dashboard in a real browser: Debian's headless Chromium (/usr/bin/chromium), driven by Playwright, against
the running `serve` + `workers` stack. Each test signs in with an API token, does what a person would, and
saves a screenshot under its tmp dir."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_support import HttpStack
from pipeline_support import make_emails
from playwright.sync_api import Browser, Page, expect, sync_playwright

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
#: A bound for pages that wait on the pipeline, in ms; never a measurement.
WAIT_MS = 90_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: scripts/services installs Debian's chromium"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, http: HttpStack) -> Iterator[Page]:
    context = browser.new_context(base_url=http.url, accept_downloads=True, viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    try:
        yield opened
    finally:
        context.close()


def sign_in(page: Page, token: str) -> None:
    page.goto("/")
    assert page.url.endswith("/login")  # signed out: the dashboard sends you to the login form
    page.fill("#token", token)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Requests")


def test_a_list_is_uploaded_watched_until_finished_and_its_results_downloaded(
    page: Page, http: HttpStack, tmp_path: Path
) -> None:
    emails = make_emails(50, "browser")
    upload = tmp_path / "contacts.csv"
    upload.write_text("email,name,team\n" + "".join(f"{e},N{i},=SUM(A1)\n" for i, e in enumerate(emails)))
    sign_in(page, http.tokens["submit"])

    page.click("text=Upload a list")
    page.set_input_files("#file", str(upload))
    page.fill("#user_id", "browser-test")
    page.click("button:has-text('Verify')")
    expect(page.locator("h1")).to_contain_text("Request")
    # The page reloads itself until the request is done; wait (bounded) for the finished state.
    expect(page.locator("#state")).to_have_text("finished", timeout=WAIT_MS)
    expect(page.locator("#preview tr")).to_have_count(21)  # the header and PREVIEW_ROWS rows
    page.screenshot(path=str(tmp_path / "request-finished.png"), full_page=True)

    with page.expect_download() as download_info:
        page.click("#downloads a:has-text('CSV')")
    saved = tmp_path / "results.csv"
    download_info.value.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert [r["email"] for r in rows] == emails
    assert {r["team"] for r in rows} == {"'=SUM(A1)"} and all(r["status"] for r in rows)

    page.goto("/")
    expect(page.locator("#requests")).to_contain_text("contacts.csv")
    page.screenshot(path=str(tmp_path / "requests.png"), full_page=True)


def test_a_queue_is_paused_and_resumed_from_the_queues_page(page: Page, http: HttpStack, tmp_path: Path) -> None:
    sign_in(page, http.tokens["admin"])
    page.click("header >> text=Queues")
    row = page.locator("tr[data-queue='batch-status-check']")
    row.locator("button:has-text('Pause')").click()
    expect(row.locator(".queue-state")).to_have_text("paused")
    page.screenshot(path=str(tmp_path / "queue-paused.png"), full_page=True)
    with http.client("read") as api:
        assert next(q for q in api.get("/queues").json() if q["name"] == "batch-status-check")["paused"]

    row.locator("button:has-text('Resume')").click()
    expect(row.locator(".queue-state")).to_have_text("running")
    page.screenshot(path=str(tmp_path / "queue-resumed.png"), full_page=True)
    with http.client("read") as api:
        assert not next(q for q in api.get("/queues").json() if q["name"] == "batch-status-check")["paused"]


def test_health_and_dead_letters_pages_render_and_a_read_token_sees_no_buttons(
    page: Page, http: HttpStack, tmp_path: Path
) -> None:
    page.goto("/login")
    page.fill("#token", "bq_wrong")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_have_text("unknown or revoked token")
    sign_in(page, http.tokens["read"])
    page.click("header >> text=Health")
    expect(page.locator("svg.chart")).to_have_count(3)
    page.screenshot(path=str(tmp_path / "health.png"), full_page=True)
    page.click("header >> text=Dead letters")
    expect(page.locator("h1")).to_have_text("Dead letters")
    page.click("header >> text=Queues")
    expect(page.locator("#queues button")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "queues-read-only.png"), full_page=True)
