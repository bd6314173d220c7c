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

#: The plain, common address in one match, its domain as group 1: what `is_valid_syntax` accepts, with the local
#: part's length (at most MAX_LOCAL_LENGTH) and the top-level label (not all digits) checked by the pattern, so
#: for an address of at most MAX_ADDRESS_LENGTH characters `PLAIN_ADDRESS.fullmatch` agrees with it in one call.
#: Its classes are ASCII ranges, and it has no IGNORECASE (which would let U+212A, the Kelvin sign, match "k").
PLAIN_ADDRESS = re.compile(rf"(?=[^@]{{1,{MAX_LOCAL_LENGTH}}}@){_LOCAL}@((?:{_LABEL}\.)+(?![0-9]+\Z){_LABEL})")


def normalize_email(raw: str) -> str:
    """Trim, and lower-case the domain (local parts are case-sensitive by the RFC, so they stay as given)."""
    text = raw.strip()
    local, sep, domain = text.rpartition("@")
    if not sep:
        return text
    lowered = domain.lower()
    # Most domains come lower-case already: the address is then its own normal form, with no copy made.
    return text if lowered == domain else f"{local}@{lowered}"


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
