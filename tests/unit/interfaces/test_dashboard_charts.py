"""The health page's SVG charts: points scaled into the box, gaps skipped, fixed or fitted scales."""

from __future__ import annotations

from bouncer_queue.interfaces.dashboard.charts import HEIGHT, WIDTH, line_chart


def _points(text: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in (pair.split(",") for pair in text.split())]


def test_a_share_is_drawn_on_a_fixed_scale_and_gaps_are_skipped() -> None:
    chart = line_chart("budget", [0.0, None, 1.0], bottom=0, top=1)
    assert _points(chart.points) == [(0.0, HEIGHT - 4), (WIDTH, 4.0)]
    assert (chart.latest, chart.count) == (1.0, 2)


def test_a_free_scale_spans_the_values_so_a_small_drift_shows() -> None:
    chart = line_chart("credits", [1000.0, 990.0])
    assert (chart.bottom, chart.top) == (990.0, 1000.0)
    assert [y for _, y in _points(chart.points)] == [4.0, HEIGHT - 4]


def test_an_empty_series_draws_nothing() -> None:
    chart = line_chart("nothing", [])
    assert (chart.points, chart.latest, chart.count) == ("", None, 0)


def test_captions_read_like_numbers() -> None:
    assert line_chart("credits", [1_000_000.0, 999_950.0]).caption == "latest 999,950; scale 999,950 – 1,000,000"
    assert line_chart("budget", [0.35], bottom=0, top=1).caption == "latest 0.35; scale 0 – 1"
