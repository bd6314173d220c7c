"""The operations routes of the workers' listener (ops/listener.py): /metrics, /livez and /readyz.

- `/metrics`: the process's Prometheus registry (ops/metrics.py).
- `/livez`: 200 while this process works: its event loop ticked recently (`LoopMonitor`) and its Redis heartbeat
  (ops/heartbeat.py) was renewed within HEARTBEAT_TTL_SECONDS. 503 otherwise, so an orchestrator restarts it.
- `/readyz`: 200 when Redis and the database answer now (each within READY_TIMEOUT_SECONDS); 503 otherwise, so
  a load balancer or a rollout waits.

Both probes answer JSON naming each check, e.g. `{"status": "ok", "checks": {"redis": "ok", ...}}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bouncer_queue.ops.heartbeat import Heartbeat
from bouncer_queue.ops.metrics import Metrics
from bouncer_queue.ops.periodic import every

#: How often the loop monitor ticks, and how old its last tick may be before the loop counts as stuck.
LOOP_TICK_SECONDS = 1.0
LOOP_STALE_SECONDS = 10.0
READY_TIMEOUT_SECONDS = 2.0

#: A readiness check: awaits one round trip, raising when the dependency does not answer.
Check = Callable[[], Awaitable[object]]


class LoopMonitor:
    """Ticks on the event loop; a loop blocked by synchronous work stops ticking, and `age_seconds` grows."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def age_seconds(self) -> float:
        return time.monotonic() - self._last

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LoopMonitor]:
        async def tick() -> None:
            self._last = time.monotonic()

        async with every(LOOP_TICK_SECONDS, tick, "loop-monitor"):
            yield self


@dataclass(frozen=True)
class Liveness:
    """What /livez judges: the event loop's tick and the heartbeat's last successful renewal."""

    loop: LoopMonitor
    heartbeat: Heartbeat

    def checks(self) -> dict[str, str]:
        loop_age = self.loop.age_seconds()
        beat_age = self.heartbeat.age_seconds()
        return {
            "event_loop": "ok" if loop_age <= LOOP_STALE_SECONDS else f"stale: last tick {loop_age:.1f} s ago",
            "heartbeat": "ok"
            if beat_age is not None and beat_age <= self.heartbeat.ttl_seconds
            else f"stale: last renewed {'never' if beat_age is None else f'{beat_age:.1f} s ago'}",
        }


def _verdict(checks: Mapping[str, str]) -> JSONResponse:
    ok = all(value == "ok" for value in checks.values())
    return JSONResponse({"status": "ok" if ok else "failing", "checks": dict(checks)}, status_code=200 if ok else 503)


async def _run_check(check: Check) -> str:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await check()
    except TimeoutError:
        return f"no answer within {READY_TIMEOUT_SECONDS:g} s"
    except Exception as exc:  # the probe reports, it does not fail
        return type(exc).__name__
    return "ok"


def ops_routes(metrics: Metrics, liveness: Liveness, readiness: Mapping[str, Check]) -> list[BaseRoute]:
    """The three operations routes; `readiness` maps a dependency's name to its round-trip check."""

    async def metrics_page(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def livez(request: Request) -> Response:
        return _verdict(liveness.checks())

    async def readyz(request: Request) -> Response:
        names = list(readiness)
        results = await asyncio.gather(*(_run_check(readiness[name]) for name in names))
        return _verdict(dict(zip(names, results, strict=True)))

    return [
        Route("/metrics", metrics_page, methods=["GET"]),
        Route("/livez", livez, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
