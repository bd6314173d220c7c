"""Wire models of the Bouncer API (v1.1): batch objects and verification results, as Bouncer sends them.

Every model keeps unknown fields (`extra="allow"`) and types enum-like values as plain strings, so a new
status, reason or flag value from Bouncer never breaks parsing; the pipeline decides what an unknown value
means. Tri-state flags are the strings "yes"/"no"/"unknown". `VerificationResult.raw` gives back the object
as received, for storing Bouncer's whole answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
