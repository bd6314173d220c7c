"""Inline SVG line charts for the health page: a series of numbers becomes a polyline's points, no JavaScript."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 600
HEIGHT = 120


@dataclass(frozen=True)
class Chart:
    """One series, scaled into a WIDTH x HEIGHT box between `bottom` and `top`."""

    title: str
    points: str
    latest: float | None
    bottom: float
    top: float
    count: int

    @property
    def caption(self) -> str:
        latest = "–" if self.latest is None else number(self.latest)
        return f"latest {latest}; scale {number(self.bottom)} – {number(self.top)}"


def number(value: float) -> str:
    """1,000,000 for counts, 0.35 for shares."""
    return f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.2g}"


def line_chart(
    title: str, values: Sequence[float | None], *, bottom: float | None = None, top: float | None = None
) -> Chart:
    """The series oldest first; gaps (None) are left out. `bottom`/`top` fix the scale (0 and 1 for a share);
    otherwise it spans the values seen, so a slow drift (credits spent) stays visible."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    low = bottom if bottom is not None else min((v for _, v in known), default=0.0)
    high = top if top is not None else max((v for _, v in known), default=1.0)
    span = (high - low) or 1.0
    step = WIDTH / max(len(values) - 1, 1)
    points = " ".join(f"{i * step:.1f},{HEIGHT - 4 - _clip((v - low) / span) * (HEIGHT - 8):.1f}" for i, v in known)
    latest = known[-1][1] if known else None
    return Chart(title=title, points=points, latest=latest, bottom=low, top=high, count=len(known))


def _clip(share: float) -> float:
    return min(max(share, 0.0), 1.0)
