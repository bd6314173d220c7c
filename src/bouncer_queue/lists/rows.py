"""The two things a list reader produces per input row: an `EmailRow` to ingest, or a `SkippedRow` to report.

Every format (CSV, TSV, TXT, JSON, XLSX) funnels its cells through `make_row`, so "what counts as no email" and
the normal form of an address are decided in one place. Both carry the input row as given (`row`/`extra`), so a
skipped row can still be stored and written back out with its reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from bouncer_queue.emails import normalize_email
from bouncer_queue.storage.records import EmailRow

# EmailRow's fields in order (email, name, row_number, extra, skipped, invalid), without NamedTuple's Python
# __new__: make_row runs once per row of lists of millions.
_new_row = partial(tuple.__new__, EmailRow)


@dataclass(frozen=True)
class SkippedRow:
    """An input row that carries no address; `row_number` is where the user finds it (see `ListReader`)."""

    row_number: int
    reason: str
    row: Mapping[str, Any] | None = None

    def as_email_row(self) -> EmailRow:
        """The row as the ledger stores it: no address, the reason, and the input row for the export."""
        return EmailRow(email="", row_number=self.row_number, extra=self.row, skipped=self.reason)


def make_row(row_number: int, raw_email: str, name: str | None, row: Mapping[str, Any] | None) -> EmailRow | SkippedRow:
    """Normalize one row. Malformed addresses are still returned: Bouncer (or a later pre-filter) judges them."""
    email = normalize_email(raw_email)
    if not email:
        return SkippedRow(row_number, "no email", row)
    made: EmailRow = _new_row((email, (name or "").strip() or None, row_number, row or None, None, False))
    return made
