"""The dashboard's pages: requests with progress, one request (batches, results preview, downloads), the upload
form, the queues (pause, resume, retry), dead letters (replay) and health (charts from Bouncer_Health_Metrics).

Every page and action calls the same QueueManager methods and schema serializers as the JSON API, and signs in
with the same API tokens: the login form checks a token and keeps it in an HttpOnly, SameSite=Strict cookie
(the SameSite rule is what keeps other sites from posting the action forms). A page that is still changing
reloads itself every few seconds with a meta refresh, so no script is needed.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from bouncer_queue.access import Scope, allows
from bouncer_queue.errors import ReplayRefused, VerifierError
from bouncer_queue.interfaces.dashboard.charts import line_chart
from bouncer_queue.interfaces.http import submissions
from bouncer_queue.interfaces.http.auth import COOKIE_NAME
from bouncer_queue.interfaces.http.deps import ManagerDep
from bouncer_queue.interfaces.http.routes.operations import queue_overview
from bouncer_queue.interfaces.http.schemas import to_batch, to_dead_letter, to_detail
from bouncer_queue.lists.export import FLAG_COLUMNS, row_flags
from bouncer_queue.service import QueueManager, scrub
from bouncer_queue.storage.records import ApiToken

HERE = Path(__file__).parent
PREVIEW_ROWS = 20
REFRESH_SECONDS = 2


class LoginRequired(Exception):
    """No valid token in the cookie: the page answers with a redirect to the login form."""


async def page_token(request: Request, manager: ManagerDep) -> ApiToken:
    token = request.cookies.get(COOKIE_NAME)
    found = await manager.authenticate(token) if token else None
    if found is None:
        raise LoginRequired
    return found


PageToken = Annotated[ApiToken, Depends(page_token)]
router = APIRouter(include_in_schema=False)


def mount_dashboard(app: FastAPI, manager: QueueManager) -> None:
    """Add the pages and their static files to `app`."""
    app.state.templates = Jinja2Templates(directory=HERE / "templates")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(router)
    app.add_exception_handler(LoginRequired, _to_login)


async def _to_login(request: Request, exc: Exception) -> Response:
    return RedirectResponse("/login", status.HTTP_303_SEE_OTHER)


def render(request: Request, name: str, token: ApiToken | None, code: int = 200, **context: Any) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.templates
    context |= {"token": token, "is_admin": token is not None and allows(token.scopes, Scope.ADMIN)}
    return templates.TemplateResponse(request, name, context, status_code=code)


def back(path: str) -> RedirectResponse:
    return RedirectResponse(path, status.HTTP_303_SEE_OTHER)


def need(token: ApiToken, scope: Scope) -> None:
    if not allows(token.scopes, scope):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this token lacks the {scope.value!r} scope")


# Signing in


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> HTMLResponse:
    return render(request, "login.html", None)


@router.post("/login", response_model=None)
async def login(request: Request, manager: ManagerDep, token: Annotated[str, Form()]) -> Response:
    found = await manager.authenticate(token.strip())
    if found is None:
        return render(request, "login.html", None, 401, error="unknown or revoked token")
    response = back("/")
    secure = manager.settings.api_cookie_secure
    response.set_cookie(COOKIE_NAME, token.strip(), httponly=True, samesite="strict", secure=secure)
    return response


@router.post("/logout")
async def logout() -> RedirectResponse:
    response = back("/login")
    response.delete_cookie(COOKIE_NAME)
    return response


# Requests


@router.get("/", response_class=HTMLResponse)
async def requests_page(request: Request, manager: ManagerDep, token: PageToken, offset: int = 0) -> HTMLResponse:
    records = await manager.list_requests(limit=25, offset=max(offset, 0))
    rows = [to_detail(s) for r in records if (s := await manager.request_status(r.request_id)) is not None]
    refresh = any(not row.done for row in rows)
    return render(request, "requests.html", token, rows=rows, offset=offset, refresh=refresh and REFRESH_SECONDS)


@router.get("/requests/{request_id}", response_class=HTMLResponse)
async def request_page(request: Request, request_id: str, manager: ManagerDep, token: PageToken) -> HTMLResponse:
    found = await manager.request_status(request_id)
    if found is None:
        return render(request, "error.html", token, 404, message=f"no request {request_id[:80]!r}")
    batches = [to_batch(b) for b in await manager.request_batches(request_id)]
    preview = await _preview(manager, request_id)
    refresh = REFRESH_SECONDS if not found.done else 0
    return render(request, "request.html", token, r=to_detail(found), batches=batches, preview=preview, refresh=refresh)


async def _preview(manager: QueueManager, request_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    export = manager.export(request_id)
    try:
        async for row in export:
            flags = dict(zip(FLAG_COLUMNS, row_flags(row), strict=True))
            rows.append({"email": row.email, "name": row.name, "status": row.status, "reason": row.reason} | flags)
            if len(rows) >= PREVIEW_ROWS:
                break
    finally:
        # Stopping early: close the export now, so its cursor and connection go back at once, not at GC.
        close = getattr(export, "aclose", None)
        if close is not None:
            await close()
    return rows


@router.get("/upload", response_class=HTMLResponse)
async def upload_form(request: Request, token: PageToken) -> HTMLResponse:
    return render(request, "upload.html", token)


@router.post("/upload", response_model=None)
async def upload(request: Request, manager: ManagerDep, token: PageToken) -> Response:
    need(token, Scope.SUBMIT)
    submissions.check_length(request, manager.settings.api_max_upload_bytes)
    try:
        async with request.form(max_files=1, max_fields=20, max_part_size=64 * 1024) as form:
            accepted = await submissions.submit_upload(manager, form, submissions.from_form(form, None))
    except VerifierError as exc:
        return render(request, "upload.html", token, 422, error=scrub(manager.settings, str(exc)))
    except HTTPException as exc:
        return render(request, "upload.html", token, exc.status_code, error=exc.detail)
    return back(f"/requests/{accepted.request_id}")


# Queues, dead letters, health


@router.get("/queues", response_class=HTMLResponse)
async def queues_page(request: Request, manager: ManagerDep, token: PageToken) -> HTMLResponse:
    return render(request, "queues.html", token, queues=await queue_overview(manager))


@router.post("/queues/{queue}/{action}")
async def queue_action(queue: str, action: str, manager: ManagerDep, token: PageToken) -> RedirectResponse:
    need(token, Scope.ADMIN)
    actions = {
        "pause": manager.pause_queue,
        "resume": manager.resume_queue,
        "retry-failed": manager.retry_failed_jobs,
        "clean-failed": manager.clean_failed_jobs,
    }
    if action not in actions:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no action {action!r}")
    await actions[action](queue)
    return back("/queues")


@router.get("/dead-letters", response_class=HTMLResponse)
async def dead_letters_page(request: Request, manager: ManagerDep, token: PageToken) -> HTMLResponse:
    letters = [to_dead_letter(d) for d in await manager.dead_letters(include_replayed=True, limit=200)]
    return render(request, "dead_letters.html", token, letters=letters)


@router.post("/dead-letters/{letter_id}/replay")
async def replay(letter_id: int, manager: ManagerDep, token: PageToken) -> RedirectResponse:
    need(token, Scope.ADMIN)
    with contextlib.suppress(ReplayRefused):  # may have been charged: the page says to use the CLI's --force
        await manager.replay_dead_letter(letter_id)
    return back("/dead-letters")


@router.get("/health", response_class=HTMLResponse)
async def health_page(request: Request, manager: ManagerDep, token: PageToken) -> HTMLResponse:
    report = await manager.get_health_status()
    history = list(reversed(await manager.health_history(200)))
    snaps = [m.snapshot.get("snapshot", m.snapshot) for m in history]
    charts = [
        line_chart("credits left", [s.get("credits_left") for s in snaps]),
        line_chart(
            "batches in flight", [s.get("batches_in_flight") for s in snaps], bottom=0, top=report.snapshot.max_batches
        ),
        line_chart(
            "rate-limit budget used", [_peak(s.get("rate_limit_utilization")) for s in snaps], bottom=0, top=1.0
        ),
    ]
    return render(request, "health.html", token, report=report.to_dict(), charts=charts, checks=len(history))


def _peak(usage: dict[str, float] | None) -> float | None:
    """The busiest budget's share at one check."""
    return max(usage.values(), default=None) if usage else None
