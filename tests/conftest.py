"""Fixtures shared by every suite: where the real services are, and the rule for when they are missing.

Locally a missing PostgreSQL, MariaDB or Redis skips its tests; with CI=true it fails them, so a CI run can
never pass by skipping a suite.
"""

from __future__ import annotations

import os
import signal
import socket
import uuid
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get("BOUNCER_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("BOUNCER_TEST_MYSQL_URL", "mysql+aiomysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("BOUNCER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl+C reaches the commands the tests start, however the suite itself was started.

    A shell without job control starts a background command (`scripts/test &`, `nohup ...`) with SIGINT ignored,
    and an ignored signal stays ignored across exec: every command a test started would then ignore the SIGINT it
    sends (the test waits for an exit that never comes, and the command lives on, loading the machine for the tests
    after it). A handler, unlike an ignored signal, is reset to the default at exec.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, default_port: int) -> str:
    """Return the service URL, or skip (fail under CI=true) when nothing answers there."""
    if _reachable(url, default_port):
        return url
    message = f"{name} is not reachable at {urlsplit(url).netloc}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI runs every suite, so this is a failure, not a skip")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return require_service("PostgreSQL", POSTGRES_URL, 5432)


@pytest.fixture(scope="session")
def mysql_url() -> str:
    return require_service("MariaDB", MYSQL_URL, 3306)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return require_service("Redis", REDIS_URL, 6379)


@pytest.fixture
def queue_prefix() -> str:
    """A bullmq key prefix of the test's own, hash-tagged like the production default; never flushdb."""
    return "{bqtest-" + uuid.uuid4().hex[:12] + "}"
