"""The thin `serve` and `tokens` commands: what they hand down, and how they refuse bad options."""

from __future__ import annotations

from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from typer.testing import CliRunner

from bouncer_queue.interfaces.cli import app


def test_serve_runs_uvicorn_on_the_options_or_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    seen: list[uvicorn.Config] = []

    async def fake_serve(self: uvicorn.Server, sockets: Any = None) -> None:
        seen.append(self.config)

    monkeypatch.setattr(uvicorn.Server, "serve", fake_serve)
    monkeypatch.setenv("BOUNCER_QUEUE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("API_PORT", "8123")
    runner = CliRunner()
    assert runner.invoke(app, ["serve"]).exit_code == 0
    assert runner.invoke(app, ["serve", "--host", "0.0.0.0", "--port", "9000"]).exit_code == 0
    assert [(c.host, c.port) for c in seen] == [("127.0.0.1", 8123), ("0.0.0.0", 9000)]
    assert isinstance(seen[0].app, FastAPI) and seen[0].log_config is None


def test_tokens_create_refuses_an_unknown_scope_before_touching_anything() -> None:
    result = CliRunner().invoke(app, ["tokens", "create", "--name", "x", "--scope", "write"])
    assert result.exit_code == 2 and "valid: read, submit, admin" in result.output
