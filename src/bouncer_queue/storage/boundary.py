"""The storage boundary: SQLAlchemy and driver exceptions become StorageError here, once, with no password.

Every public Repository method and the migration helpers run inside `translate_errors`. The message names the
operation, the masked URL and the driver's own first line, with any password that slipped into it blanked out.
A database that does not answer (connection refused, server shutting down, connection lost) becomes
DatabaseUnavailable, which the pipeline treats as a pause. `is_conflict` names the errors a transaction may
simply be run again for (deadlock, serialization failure); transactions.py does that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from bouncer_queue.errors import DatabaseUnavailable, StorageError

#: What the drivers raise without SQLAlchemy wrapping it: sockets refused or timed out while connecting.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError)
#: SQLSTATE classes of a server that is away: 08 connection exceptions, 57P0x shutdown / cannot connect now.
_UNREACHABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")
#: MySQL client errors: cannot connect (2002, 2003), server gone away (2006), connection lost (2013).
_MYSQL_UNREACHABLE = frozenset({2002, 2003, 2006, 2013})
#: PostgreSQL deadlock and serialization failure; MySQL deadlock and lock wait timeout.
_CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})
_MYSQL_CONFLICTS = frozenset({1213, 1205})


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
    except DRIVER_ERRORS as exc:
        error = DatabaseUnavailable if is_unreachable(exc) else StorageError
        raise error(f"cannot {operation} on {masked_url}: {describe(exc, password)}") from None


def is_unreachable(exc: BaseException) -> bool:
    """True when `exc` says the database did not answer, rather than refusing what was asked."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    origin = getattr(exc, "orig", None) or exc
    if isinstance(origin, OSError):  # refused, reset or timed out (TimeoutError is an OSError)
        return True
    sqlstate = _sqlstate(origin)
    return (sqlstate is not None and sqlstate.startswith(_UNREACHABLE_SQLSTATES)) or _code(origin) in _MYSQL_UNREACHABLE


def is_conflict(exc: BaseException) -> bool:
    """True for a deadlock or serialization failure: the transaction was rolled back and may run again."""
    origin = getattr(exc, "orig", None) or exc
    return _sqlstate(origin) in _CONFLICT_SQLSTATES or _code(origin) in _MYSQL_CONFLICTS


def _sqlstate(error: BaseException) -> str | None:
    value = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return value if isinstance(value, str) else None


def _code(error: BaseException) -> int | None:
    code = error.args[0] if error.args else None
    return code if isinstance(code, int) else None


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
