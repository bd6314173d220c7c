"""The syntax pre-filter: addresses that cannot be delivered by syntax are answered locally and never sent.

The check is email-validator's (pinned to 2.3.0 in pyproject.toml, because what it rejects decides what is billed),
with no DNS lookup: `validate_email(address, check_deliverability=False, strict=True)` with its defaults otherwise
(internationalized addresses allowed, quoted local parts, IP-literal domains and special-use domains such as
`.test`, `.local`, `.invalid`, `.onion` refused), plus the RFC 5321 lengths, counted in UTF-8 octets: at most 64
before the @, 253 after it and 254 in all. Such an address gets `undeliverable` / `invalid_email` with source
`local` (the Bouncer_Queue row's state `invalid`).

Speed: email-validator costs about 70 µs an address, over a minute for a million rows. An address that
emails.is_valid_syntax accepts (ASCII dot-atom local part, LDH domain; a strict subset of what email-validator
accepts) only needs its domain checked, and a list has few domains, so the domain's verdict is cached; every
other address goes through email-validator whole. The plain address of at most 254 characters is recognized
by one match (emails.PLAIN_ADDRESS: ASCII, so its characters are its octets and the lengths hold); any other
takes the checks one by one, with the same verdicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from operator import attrgetter, itemgetter
from typing import Any

from email_validator import EmailNotValidError, validate_email

from bouncer_queue.emails import PLAIN_ADDRESS, is_valid_syntax
from bouncer_queue.storage.records import EmailRow

#: The status and reason of a local answer, as Bouncer gives them for a malformed address.
LOCAL_STATUS = "undeliverable"
LOCAL_REASON = "invalid_email"
MAX_ADDRESS_OCTETS = 254
MAX_LOCAL_OCTETS = 64
MAX_DOMAIN_OCTETS = 253
_DOMAIN_CACHE = 4096
_plain = PLAIN_ADDRESS.fullmatch
_domain_of: Callable[[Any], str] = itemgetter(1)  # a PLAIN_ADDRESS match's domain (None has none: TypeError)
_email = attrgetter("email")


def is_deliverable_syntax(address: str) -> bool:
    """True unless `address` cannot be delivered by its syntax alone."""
    plain = _plain(address) if len(address) <= MAX_ADDRESS_OCTETS else None
    if plain is not None:
        return _domain_ok(plain[1].lower())
    if not _lengths_ok(address):
        return False
    if is_valid_syntax(address):
        return _domain_ok(address.rpartition("@")[2].lower())
    return _validates(address)


def mark_invalid(chunk: Sequence[EmailRow]) -> list[EmailRow]:
    """The chunk with every undeliverable address flagged `invalid` (the others are the same objects). Rows
    without an address (`skipped`) are left as they are: they are kept for the export, not answered."""
    if _all_plain_and_deliverable(list(map(_email, chunk))):
        return list(chunk)
    return [
        row if row.skipped is not None or is_deliverable_syntax(row.email) else row._replace(invalid=True)
        for row in chunk
    ]


def _all_plain_and_deliverable(addresses: list[str]) -> bool:
    """Whether is_deliverable_syntax holds for every address by its one-match path, taken in C over the whole
    chunk (a million rows make no Python call each). A skipped row's empty address is not plain: False."""
    if not addresses or max(map(len, addresses)) > MAX_ADDRESS_OCTETS:
        return False
    try:  # each match is dropped as soon as its domain is taken: a chunk's worth would only load the GC
        return all(map(_domain_ok, map(str.lower, map(_domain_of, map(_plain, addresses)))))
    except TypeError:  # an address that is not plain has no match (None) to take a domain from
        return False


def _lengths_ok(address: str) -> bool:
    local, _, domain = address.rpartition("@")
    octets = len(address.encode("utf-8", "surrogatepass"))
    if octets > MAX_ADDRESS_OCTETS:
        return False
    return len(local.encode("utf-8", "surrogatepass")) <= MAX_LOCAL_OCTETS and len(domain) <= MAX_DOMAIN_OCTETS


@lru_cache(maxsize=_DOMAIN_CACHE)
def _domain_ok(domain: str) -> bool:
    # The local part already passed a stricter check; a stand-in one asks email-validator about the domain.
    return _validates(f"a@{domain}")


def _validates(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False, strict=True)
    except EmailNotValidError:
        return False
    return True
