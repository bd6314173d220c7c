"""The storage boundary: SQLAlchemy and driver exceptions become StorageError here, once, with no password.

Every public Repository method and the migration helpers run inside `translate_errors`. The message names the
operation, the masked URL and the driver's own first line, with any password that slipped into it blanked out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from bouncer_queue.errors import StorageError

#: What the drivers raise without SQLAlchemy wrapping it: sockets refused or timed out while connecting.
_DRIVER_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError)


class SourceError(Exception):
    """Carries an exception raised by caller-supplied input (an iterable) through the translator untouched."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


@asynccontextmanager
async def translate_errors(masked_url: str, operation: str, password: str | None = None) -> AsyncIterator[None]:
    """Turn database errors raised inside the block into StorageError; let the caller's own errors through."""
    try:
        yield
    except SourceError as wrapped:
        raise wrapped.error from None
    except StorageError:
        raise
    except _DRIVER_ERRORS as exc:
        raise StorageError(f"cannot {operation} on {masked_url}: {describe(exc, password)}") from None


def describe(exc: BaseException, password: str | None) -> str:
    """The exception's class and first line, with `password` blanked out."""
    origin = getattr(exc, "orig", None) or exc
    lines = str(origin).strip().splitlines()
    text = f"{type(origin).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    if password:
        text = text.replace(password, "***")
    return text


def url_password(url: str) -> str | None:
    """The password in `url`, so messages can be scrubbed of it; None when there is none or the URL is unparsable."""
    try:
        return make_url(url).password
    except (ArgumentError, ValueError):
        return None
