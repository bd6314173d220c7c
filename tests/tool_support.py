"""Commands some tests need (promtool, node, npm, redis-server, pg_ctl): found on PATH, else skipped locally and
failed under CI=true, the rule tests/conftest.py applies to services."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str, hint: str) -> str:
    """Return the path of the command `name`, or skip (fail under CI=true) when it is not installed."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} is not installed ({hint})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI runs every suite, so this is a failure, not a skip")
    pytest.skip(message)
