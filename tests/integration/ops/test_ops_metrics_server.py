"""The scrape endpoint: served on a port the OS picks, scraped over real HTTP, closed cleanly."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bouncer_queue.ops.metrics import Metrics


def test_serve_on_port_zero_reports_the_bound_port_and_serves_the_registry():
    metrics = Metrics()
    metrics.set_credits_left(4_200)
    metrics.bouncer_response("verify", 429)

    with metrics.serve(0) as server:
        assert server.port > 0
        assert server.host == "127.0.0.1"
        response = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert values[("credits_left", ())] == 4_200
    assert values[("bouncer_rate_limited_total", (("endpoint", "verify"),))] == 1


def test_close_frees_the_port_and_is_idempotent():
    server = Metrics().serve(0)
    port = server.port

    server.close()
    server.close()

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
