"""Inline SVG line charts for the health page: a series of numbers becomes a polyline's points, no JavaScript."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 600
HEIGHT = 120


@dataclass(frozen=True)
class Chart:
    """One series, scaled into a WIDTH x HEIGHT box."""

    title: str
    points: str
    latest: float | None
    top: float
    count: int


def line_chart(title: str, values: Sequence[float | None], *, top: float | None = None) -> Chart:
    """The series oldest first; gaps (None) are left out; `top` fixes the scale (1.0 for a share)."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    scale = top if top is not None else max((v for _, v in known), default=0.0) or 1.0
    step = WIDTH / max(len(values) - 1, 1)
    points = " ".join(f"{i * step:.1f},{HEIGHT - min(v / scale, 1.0) * HEIGHT:.1f}" for i, v in known)
    latest = known[-1][1] if known else None
    return Chart(title=title, points=points, latest=latest, top=scale, count=len(known))
