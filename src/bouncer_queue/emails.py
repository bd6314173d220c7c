"""Address syntax and normal form, shared by the list readers and the simulator.

The check is deliberately close to what mail providers accept (RFC 5321 dot-atom local part, a dotted domain of
LDH labels), not the full RFC 5322 grammar: quoted local parts and IP-literal domains are rejected, as Bouncer
rejects them as `invalid_email`.
"""

from __future__ import annotations

import re

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"^{_LOCAL}@{_LABEL}(?:\.{_LABEL})+$")

MAX_ADDRESS_LENGTH = 254
MAX_LOCAL_LENGTH = 64


def normalize_email(raw: str) -> str:
    """Trim, and lower-case the domain (local parts are case-sensitive by the RFC, so they stay as given)."""
    text = raw.strip()
    local, sep, domain = text.rpartition("@")
    if not sep:
        return text
    return f"{local}@{domain.lower()}"


def is_valid_syntax(address: str) -> bool:
    """True when `address` is a plausible deliverable address by syntax alone."""
    if len(address) > MAX_ADDRESS_LENGTH or not address.isascii():
        return False
    local = address.rpartition("@")[0]
    if len(local) > MAX_LOCAL_LENGTH:
        return False
    tld = address.rpartition(".")[2]
    return bool(_ADDRESS.match(address)) and not tld.isdigit()


def dedup_key(address: str) -> str:
    """The key under which two spellings of one address count as duplicates (Bouncer compares case-insensitively)."""
    return address.strip().lower()
