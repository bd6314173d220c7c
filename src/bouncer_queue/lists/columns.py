"""Which column holds the address and which the name: by header name, by `--column`, or by content.

Used by the CSV reader (header cells) and the JSON reader (object keys). Header names are compared after
folding case and dropping punctuation, so "E-Mail", "email_address" and "Email Address" all match.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bouncer_queue.emails import is_valid_syntax, normalize_email

EMAIL_HEADERS = frozenset(
    {"email", "emailaddress", "emails", "mail", "mailaddress", "emailaddr", "emailid", "courriel"}
)
NAME_HEADERS = frozenset({"name", "fullname", "contactname", "displayname"})
FIRST_NAME_HEADERS = frozenset({"firstname", "first", "givenname", "fname", "forename"})
LAST_NAME_HEADERS = frozenset({"lastname", "last", "surname", "familyname", "lname"})

# A column is "the email column by content" when at least this share of its filled cells are addresses.
_CONTENT_THRESHOLD = 0.5


def header_key(header: str) -> str:
    """The comparable form of a header or key: case-folded, letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", header.casefold())


def looks_like_address(value: str) -> bool:
    return "@" in value and is_valid_syntax(normalize_email(value))


def unique_headers(cells: Sequence[str]) -> tuple[str, ...]:
    """Header names made usable as `extra` keys: blanks named by position, repeats numbered."""
    seen: set[str] = set()
    names: list[str] = []
    for position, cell in enumerate(cells, start=1):
        base = cell.strip() or f"column_{position}"
        name, counter = base, 1
        while name in seen:
            counter += 1
            name = f"{base}_{counter}"
        seen.add(name)
        names.append(name)
    return tuple(names)


def find_named(headers: Sequence[str], wanted: str) -> int | None:
    """The position of `wanted` (exact after trimming, then case-insensitive, then a 1-based number)."""
    target = wanted.strip()
    stripped = [h.strip() for h in headers]
    if target in stripped:
        return stripped.index(target)
    folded = [h.casefold() for h in stripped]
    if target.casefold() in folded:
        return folded.index(target.casefold())
    if target.isdigit() and 1 <= int(target) <= len(headers):
        return int(target) - 1
    return None


def find_by_alias(headers: Sequence[str], aliases: frozenset[str]) -> int | None:
    for position, header in enumerate(headers):
        if header_key(header) in aliases:
            return position
    return None


def find_by_content(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> int | None:
    """The column whose cells are most often addresses; ties go to a header that mentions mail."""
    best: tuple[float, int, bool] | None = None
    best_position: int | None = None
    for position, header in enumerate(headers):
        cells = [row[position].strip() for row in rows if position < len(row) and row[position].strip()]
        hits = sum(looks_like_address(cell) for cell in cells)
        if not hits or hits / len(cells) < _CONTENT_THRESHOLD:
            continue
        score = (hits / len(cells), hits, "mail" in header_key(header))
        if best is None or score > best:
            best, best_position = score, position
    return best_position


@dataclass(frozen=True)
class NameColumns:
    """Where the name comes from: one column, or a first and a last name joined."""

    full: int | None = None
    first: int | None = None
    last: int | None = None

    def pick(self, cells: Sequence[str]) -> str | None:
        if self.full is not None:
            return _cell(cells, self.full) or None
        first = _cell(cells, self.first) if self.first is not None else ""
        last = _cell(cells, self.last) if self.last is not None else ""
        if first and last:
            return f"{first} {last}"
        return first or last or None


def find_name_columns(headers: Sequence[str], email: int) -> NameColumns:
    others = ["" if position == email else header for position, header in enumerate(headers)]
    full = find_by_alias(others, NAME_HEADERS)
    if full is not None:
        return NameColumns(full=full)
    return NameColumns(first=find_by_alias(others, FIRST_NAME_HEADERS), last=find_by_alias(others, LAST_NAME_HEADERS))


def _cell(cells: Sequence[str], position: int) -> str:
    return cells[position].strip() if position < len(cells) else ""
