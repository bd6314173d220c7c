"""API tokens and their scopes: how the HTTP API and the dashboard decide who may do what.

A token is `bq_` plus 32 random bytes (URL-safe base64). Only its SHA-256 is stored (Bouncer_Api_Tokens), with
its first characters as a public prefix so people can tell tokens apart. Scopes nest: `admin` may do everything,
`submit` may also read (a producer follows what it handed in), `read` only reads.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from bouncer_queue.errors import InputError

TOKEN_PREFIX = "bq_"
PUBLIC_CHARS = 10


class Scope(StrEnum):
    """What a token may do."""

    READ = "read"  #: list and follow requests, download results, see queues and health
    SUBMIT = "submit"  #: hand in lists (and read)
    ADMIN = "admin"  #: operate the queues and dead letters (and everything else)


_IMPLIED = {Scope.ADMIN: set(Scope), Scope.SUBMIT: {Scope.SUBMIT, Scope.READ}, Scope.READ: {Scope.READ}}


def parse_scopes(values: Iterable[str]) -> tuple[Scope, ...]:
    """Scope names (also comma-separated) as Scopes; InputError names the valid ones."""
    names = [name.strip().lower() for value in values for name in value.split(",") if name.strip()]
    try:
        scopes = tuple(dict.fromkeys(Scope(name) for name in names))
    except ValueError:
        raise InputError(f"unknown scope in {names!r}; valid: {', '.join(Scope)}") from None
    if not scopes:
        raise InputError(f"a token needs at least one scope: {', '.join(Scope)}")
    return scopes


def allows(granted: Iterable[str], needed: Scope) -> bool:
    """Whether tokens with `granted` scopes may do what `needed` guards."""
    return any(needed in _IMPLIED.get(Scope(s), set()) for s in granted if s in Scope.__members__.values())


def new_token() -> str:
    """A fresh token; shown once, then only its hash is kept."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of a token. SHA-256 suffices: the token is 256 random bits, not a password."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def public_prefix(token: str) -> str:
    return token[:PUBLIC_CHARS]


@dataclass(frozen=True)
class IssuedToken:
    """A token just created: the only moment its value is known."""

    id: int
    name: str
    token: str
    scopes: tuple[str, ...]
