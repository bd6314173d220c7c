"""The two things a list reader produces per input row: an `EmailRow` to ingest, or a `SkippedRow` to report.

Every format (CSV, TXT, JSON) funnels its cells through `make_row`, so "what counts as no email" and the
normal form of an address are decided in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bouncer_queue.emails import normalize_email
from bouncer_queue.storage.records import EmailRow


@dataclass(frozen=True)
class SkippedRow:
    """An input row that carries no address; `row_number` is where the user finds it (see `ListReader`)."""

    row_number: int
    reason: str


def make_row(
    row_number: int, raw_email: str, name: str | None, extra: Mapping[str, str] | None
) -> EmailRow | SkippedRow:
    """Normalize one row. Malformed addresses are still returned: Bouncer (or a later pre-filter) judges them."""
    email = normalize_email(raw_email)
    if not email:
        return SkippedRow(row_number, "no email")
    return EmailRow(email=email, name=(name or "").strip() or None, row_number=row_number, extra=extra or None)
