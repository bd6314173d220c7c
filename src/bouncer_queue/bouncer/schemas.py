"""Wire models of the Bouncer API (v1.1): batch objects and verification results, as Bouncer sends them.

Every model keeps unknown fields (`extra="allow"`) and types enum-like values as plain strings, so a new
status, reason or flag value from Bouncer never breaks parsing; the pipeline decides what an unknown value
means. Tri-state flags are the strings "yes"/"no"/"unknown". `VerificationResult.raw` gives back the object
as received, for storing Bouncer's whole answer.

A batch download (up to 100,000 results) skips the models: `result_rows` flattens the parsed JSON array into
ResultRows in one pass, each keeping the very object Bouncer sent as its `raw`, with the same strictness (a
non-string where the wire has a string is refused).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bouncer_queue.storage.records import ResultRow


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)


class BatchInfo(_Wire):
    """A batch as returned by create and status; `credits`, `processed`, `stats` appear only once known."""

    batch_id: str = Field(alias="batchId")
    status: str
    created: datetime | None = None
    started: datetime | None = None
    completed: datetime | None = None
    quantity: int | None = None
    duplicates: int | None = None
    credits: int | None = None
    processed: int | None = None
    stats: dict[str, int] | None = None


class DomainInfo(_Wire):
    """The `domain` part of a result."""

    name: str | None = None
    accept_all: str | None = Field(default=None, alias="acceptAll")
    disposable: str | None = None
    free: str | None = None


class AccountInfo(_Wire):
    """The `account` part of a result."""

    role: str | None = None
    disabled: str | None = None
    full_mailbox: str | None = Field(default=None, alias="fullMailbox")


class DnsInfo(_Wire):
    """The `dns` part of a result; some Bouncer examples carry `provider` here."""

    type: str | None = None
    record: str | None = None
    provider: str | None = None


class VerificationResult(_Wire):
    """One verified address (real-time verify, or one element of a batch download)."""

    email: str
    status: str
    reason: str | None = None
    name: str | None = None
    domain: DomainInfo | None = None
    account: AccountInfo | None = None
    dns: DnsInfo | None = None
    top_level_provider: str | None = Field(default=None, alias="provider")
    score: int | None = None
    toxic: str | None = None
    toxicity: int | None = None
    retry_after: str | None = Field(default=None, alias="retryAfter")

    @property
    def provider(self) -> str | None:
        """The mail provider, wherever Bouncer put it (top level in the docs, under `dns` in some examples)."""
        if self.top_level_provider is not None:
            return self.top_level_provider
        return self.dns.provider if self.dns is not None else None

    @property
    def raw(self) -> dict[str, Any]:
        """The object with Bouncer's field names, holding exactly the fields it sent (unknown ones too)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def result_rows(body: Any) -> list[ResultRow]:
    """A batch download's JSON array as ResultRows; ValueError when it is not an array of result objects."""
    if not isinstance(body, list):
        raise ValueError("a download is a JSON array")
    return [_result_row(obj) for obj in body]


def _result_row(obj: Any) -> ResultRow:
    if not isinstance(obj, dict) or not isinstance(obj.get("email"), str) or not isinstance(obj.get("status"), str):
        raise ValueError("every result needs a string email and status")
    domain, account = _part(obj, "domain"), _part(obj, "account")
    provider = obj.get("provider")
    return ResultRow(
        email=obj["email"],
        status=obj["status"],
        reason=_text(obj.get("reason")),
        score=_int(obj.get("score")),
        domain=_text(domain.get("name")),
        accept_all=_text(domain.get("acceptAll")),
        disposable=_text(domain.get("disposable")),
        free=_text(domain.get("free")),
        role=_text(account.get("role")),
        disabled=_text(account.get("disabled")),
        full_mailbox=_text(account.get("fullMailbox")),
        # Top level in the docs, under `dns` in some examples.
        provider=_text(provider if provider is not None else _part(obj, "dns").get("provider")),
        toxic=_text(obj.get("toxic")),
        toxicity=_int(obj.get("toxicity")),
        raw=obj,
    )


def _part(obj: dict[str, Any], name: str) -> dict[str, Any]:
    part = obj.get(name)
    if part is None:
        return {}
    if not isinstance(part, dict):
        raise ValueError(f"`{name}` of a result is not an object")
    return part


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError("a text field of a result is not a string")


def _int(value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError("a number field of a result is not an integer")
