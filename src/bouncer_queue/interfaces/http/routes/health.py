"""/api/v1/health: the health report (Redis, database, Bouncer, alerts), and the recorded history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from bouncer_queue.interfaces.http.deps import ManagerDep, ReadToken

router = APIRouter(prefix="/health", tags=["health"])


@router.get("", response_model=None)
async def health(manager: ManagerDep, _: ReadToken) -> JSONResponse:
    """The report; 503 when unhealthy, so a load balancer can act on the status code alone."""
    report = await manager.get_health_status()
    return JSONResponse(report.to_dict(), status_code=503 if report.status == "unhealthy" else 200)


@router.get("/history")
async def history(
    manager: ManagerDep, _: ReadToken, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    """Recorded health checks (Bouncer_Health_Metrics), newest first."""
    return [
        {"recorded_at": m.recorded_at, "status": m.status, "alerts": list(m.alerts), "snapshot": dict(m.snapshot)}
        for m in await manager.health_history(limit)
    ]
