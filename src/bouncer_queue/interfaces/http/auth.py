"""Who is calling: the API token from `Authorization: Bearer <token>` (or the dashboard's cookie), and its scopes.

A missing, unknown or revoked token is 401; a token without the scope a route needs is 403. The token's value
is hashed before it is looked up and never logged or echoed.
"""

from __future__ import annotations

from fastapi import HTTPException, Request, status

from bouncer_queue.access import Scope, allows
from bouncer_queue.service import QueueManager
from bouncer_queue.storage.records import ApiToken

#: The dashboard's login cookie; it holds the token itself (HttpOnly, SameSite=Strict).
COOKIE_NAME = "bq_token"


def presented_token(request: Request) -> str | None:
    """The token the caller presented, from the Authorization header, else the cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE_NAME) or None


async def authenticate(manager: QueueManager, request: Request) -> ApiToken:
    token = presented_token(request)
    if token is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "an API token is required", {"WWW-Authenticate": "Bearer"})
    found = await manager.authenticate(token)
    if found is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown or revoked token", {"WWW-Authenticate": "Bearer"})
    return found


def require_scope(token: ApiToken, scope: Scope) -> ApiToken:
    if not allows(token.scopes, scope):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this token lacks the {scope.value!r} scope")
    return token
