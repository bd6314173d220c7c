"""HTTP API tokens (Bouncer_Api_Tokens): stored as SHA-256 hashes, found by hash, listed and revoked.

The token itself never reaches this module: interfaces/http/auth.py hashes it first, so neither the database
nor a query log can give a token away.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, insert, or_, select, update

from bouncer_queue.storage.records import ApiToken
from bouncer_queue.storage.tables import ApiTokenModel, utcnow
from bouncer_queue.storage.transactions import Queries, new_id, translated

#: `last_used_at` is written at most this often per token, so authenticating stays a read.
TOUCH_EVERY = timedelta(minutes=1)


class TokenQueries(Queries):
    """Writes and reads of Bouncer_Api_Tokens."""

    @translated("add an API token")
    async def add_token(self, name: str, token_hash: str, prefix: str, scopes: Sequence[str]) -> ApiToken:
        values = {"name": name, "token_hash": token_hash, "prefix": prefix, "scopes": ",".join(scopes)}
        async with self._db.write() as conn:
            token_id = new_id(await conn.execute(insert(ApiTokenModel).values(**values, created_at=utcnow())))
            row = (await conn.execute(_columns().where(ApiTokenModel.id == token_id))).one()
        return _token(row)

    @translated("find an API token")
    async def find_token(self, token_hash: str) -> ApiToken | None:
        """The live (not revoked) token with this hash; notes its use at most once a TOUCH_EVERY."""
        query = _columns().where(ApiTokenModel.token_hash == token_hash, ApiTokenModel.revoked_at.is_(None))
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        token = _token(row)
        if token.last_used_at is None or _naive(token.last_used_at) < utcnow() - TOUCH_EVERY:
            async with self._db.write() as conn:
                await conn.execute(
                    update(ApiTokenModel).where(ApiTokenModel.id == token.id).values(last_used_at=utcnow())
                )
        return token

    @translated("list API tokens")
    async def list_tokens(self) -> list[ApiToken]:
        async with self._db.read() as conn:
            return [_token(row) for row in (await conn.execute(_columns().order_by(ApiTokenModel.id))).all()]

    @translated("revoke an API token")
    async def revoke_token(self, name_or_id: str) -> int:
        """Revoke the live tokens of this name (or this id); how many were revoked."""
        match = [ApiTokenModel.name == name_or_id]
        if name_or_id.isdigit():
            match.append(ApiTokenModel.id == int(name_or_id))
        query = update(ApiTokenModel).where(or_(*match), ApiTokenModel.revoked_at.is_(None))
        async with self._db.write() as conn:
            return int((await conn.execute(query.values(revoked_at=utcnow()))).rowcount)


def _columns() -> Any:
    # Every column but the hash: it has no business leaving the database.
    t = ApiTokenModel
    return select(t.id, t.name, t.prefix, t.scopes, t.created_at, t.last_used_at, t.revoked_at)


def _naive(value: datetime) -> datetime:
    return value.replace(tzinfo=None)


def _token(row: Row[Any]) -> ApiToken:
    return ApiToken(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=tuple(s for s in row.scopes.split(",") if s),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )
