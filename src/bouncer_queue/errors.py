"""The error tree of bouncer-queue: every error the system raises on purpose has one root.

    VerifierError
     ├── ConfigError              bad or missing settings
     ├── InputError               a list that cannot be read (broken CSV, wrong encoding, oversize, no email column)
     ├── CreditsRefused           a request would cost more credits than --max-credits or the balance allows
     ├── StorageError             the database cannot be reached or refused a write
     │    └── DatabaseUnavailable the database does not answer (refused, down, connection lost): a pause
     ├── QueueBackendError        Redis/Valkey cannot be reached
     ├── UnknownQueueError        a queue name that is not one of the four
     ├── ReplayRefused            a dead letter whose batch may have been charged, replayed without --force
     └── BouncerError             everything about the Bouncer API (bouncer/errors.py draws its subtree)
          ├── BouncerAPIError     Bouncer answered with an error status (401, 402, 403, 404, 400/405, 429, 5xx)
          └── BouncerUnavailable  no answer: connection refused, timeout, broken response

Outside the tree, `Interrupted` says a signal stopped a command before its work was done (exit code 130).

Foreign exceptions (httpx, SQLAlchemy, redis) are translated into these once, at the adapter that meets them.
Messages never carry a secret: the API key and passwords are redacted before an error is built.
"""

from __future__ import annotations


class VerifierError(Exception):
    """bouncer-queue failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or type(self).__name__).strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(VerifierError):
    """The configuration is invalid."""


class InputError(VerifierError):
    """The input list cannot be read."""


class CreditsRefused(VerifierError):
    """The request would cost more credits than allowed or available; nothing was stored."""


class StorageError(VerifierError):
    """The database cannot be reached or refused the operation."""


class DatabaseUnavailable(StorageError):
    """The database does not answer; the work waits for it rather than failing."""


class QueueBackendError(VerifierError):
    """Redis cannot be reached."""


class UnknownQueueError(VerifierError):
    """No queue has that name."""


class ReplayRefused(VerifierError):
    """This dead letter's batch may already have been created and charged at Bouncer; replay it with --force."""


class Interrupted(Exception):
    """Stopped by a signal before the work was done; the queued work resumes when workers run again."""
