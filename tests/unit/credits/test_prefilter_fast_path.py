"""The syntax pre-filter's one-match path for plain addresses gives the same verdict as the checks one by one
(lengths in octets, emails.is_valid_syntax, email-validator), over many shapes of address: generated at random
from a fixed seed around every rule's edge, and listed by hand."""

from __future__ import annotations

import random

import pytest

from bouncer_queue import emails
from bouncer_queue.credits import prefilter
from bouncer_queue.credits.prefilter import is_deliverable_syntax, mark_invalid
from bouncer_queue.storage.records import EmailRow

_ATOM = "abcxyzABCXYZ0189!#$%&'*+/=?^_`{|}~-"
_ODD = ['"', " ", "\t", "\n", "\r", "(", ")", ",", ":", ";", "<", ">", "[", "]", "\\", "@", "é", "ü", "\u212a", "ß"]
_ODD += ["\u0131", "\u017f", "\x00", "\u200b", "\uff21", "٣", "..", "."]
_TLDS = ["com", "org", "io", "de", "c", "co1", "1co", "123", "0", "x-y", "-x", "x-", "test", "local", "invalid"]
_TLDS += ["onion", "localhost", "example", "arpa", "COM", "Com", "xn--p1ai", "xn--", "11a", "a" * 63, "a" * 64]


def _label(rng: random.Random) -> str:
    shape = rng.random()
    if shape < 0.6:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rng.randint(1, 12)))
    if shape < 0.7:
        return rng.choice(["a-b", "a--b", "-ab", "ab-", "xn--bcher-kva", "a" * 63, "a" * 64, "B" * 5, "9"])
    if shape < 0.8:
        return "".join(rng.choice("abcABC-09") for _ in range(rng.randint(1, 70)))
    return "".join(rng.choice(["a", "b", "-", "1", rng.choice(_ODD)]) for _ in range(rng.randint(0, 6)))


def _local(rng: random.Random) -> str:
    shape = rng.random()
    if shape < 0.5:
        return ".".join("".join(rng.choice(_ATOM) for _ in range(rng.randint(1, 9))) for _ in range(rng.randint(1, 3)))
    if shape < 0.65:
        return "x" * rng.choice([1, 62, 63, 64, 65, 66, 200])
    if shape < 0.8:
        return "".join(rng.choice([*_ATOM[:12], *_ODD]) for _ in range(rng.randint(0, 10)))
    return rng.choice(["", ".a", "a.", "a..b", '"a b"', "a\\@b", "é" * rng.choice([31, 32, 33]), "K\u212a"])


def _address(rng: random.Random) -> str:
    domain = ".".join([_label(rng) for _ in range(rng.randint(0, 3))] + [rng.choice(_TLDS)])
    address = f"{_local(rng)}@{domain}"
    shape = rng.random()
    if shape < 0.1:  # right around the 254-character limit
        address = address.replace("@", "@" + "d" * 60 + "." + "e" * 60 + "." + "f" * 60 + "." + "g" * 60 + ".", 1)
        address = address[-rng.randint(250, 258) :] if rng.random() < 0.5 else address
    elif shape < 0.15:
        address = rng.choice([" ", "\n", "\r\n", "@", "."]) + address
    elif shape < 0.2:
        address += rng.choice([" ", "\n", "\r", ".", "@x.com", "\x00"])
    elif shape < 0.25:
        address = address.replace("@", rng.choice(["", "@@", " @", "@ ", "\uff20"]), 1)
    return address


_HANDPICKED = [
    "ann@example.com",
    "Ann.Lee+tag@Example.COM",
    "a@b.c",
    "a@b.c1",
    "a@b.1c",
    "a@b.123",
    "a@1.2.3.4",
    "a@[127.0.0.1]",
    "a@example.com\n",
    "a@example.com ",
    " a@example.com",
    "a@exa_mple.com",
    "a@example..com",
    "a@.example.com",
    "a@example.com.",
    "a@-example.com",
    "a@example-.com",
    "a@ex--ample.com",
    "user@acme.test",
    "user@host.local",
    "user@example.onion",
    "\u212a@example.com",
    "a@\u212aelvin.com",
    "ü@beispiel.de",
    "a@bücher.de",
    "l" * 64 + "@example.com",
    "l" * 65 + "@example.com",
    "a@" + "d" * 63 + ".com",
    "a@" + "d" * 64 + ".com",
    "a@" + ("d" * 63 + ".") * 3 + "d" * 57,  # 253 characters after the @, 255 in all
    "a@" + ("d" * 63 + ".") * 3 + "d" * 56,
    "l" * 64 + "@" + ("d" * 62 + ".") * 2 + "d" * 61,  # 254 in all
    "l" * 64 + "@" + ("d" * 62 + ".") * 2 + "d" * 62,
]


def _checked_one_by_one(address: str) -> bool:
    """The pre-filter without its one-match path."""
    if not prefilter._lengths_ok(address):
        return False
    if emails.is_valid_syntax(address):
        return prefilter._domain_ok(address.rpartition("@")[2].lower())
    return prefilter._validates(address)


def test_the_pattern_s_limits_are_the_pre_filter_s() -> None:
    assert emails.MAX_LOCAL_LENGTH == prefilter.MAX_LOCAL_OCTETS
    assert emails.MAX_ADDRESS_LENGTH == prefilter.MAX_ADDRESS_OCTETS


@pytest.mark.parametrize("address", _HANDPICKED)
def test_handpicked_addresses_get_the_same_verdict(address: str) -> None:
    assert is_deliverable_syntax(address) == _checked_one_by_one(address)


def test_generated_addresses_get_the_same_verdict_and_the_plain_ones_email_validator_s() -> None:
    rng = random.Random(20261130)
    addresses = {_address(rng) for _ in range(6_000)}
    plain = [a for a in addresses if len(a) <= 254 and emails.PLAIN_ADDRESS.fullmatch(a)]
    assert len(plain) > 500 and len(addresses) - len(plain) > 2_000  # both paths are well exercised
    different = [a for a in addresses if is_deliverable_syntax(a) != _checked_one_by_one(a)]
    assert different == []
    # The plain ones, judged whole by email-validator plus the octet limits, as the module documents.
    whole = [a for a in plain if is_deliverable_syntax(a) != (prefilter._lengths_ok(a) and prefilter._validates(a))]
    assert whole == []


def test_mark_invalid_on_whole_chunks_flags_what_row_by_row_flags() -> None:
    rng = random.Random(7)
    generated = [_address(rng) for _ in range(400)]
    plain = [a for a in generated if len(a) <= 254 and emails.PLAIN_ADDRESS.fullmatch(a)]
    chunks = [
        [EmailRow(a) for a in plain],  # may hold plain addresses at undeliverable domains (.local, .test)
        [EmailRow(a) for a in plain if is_deliverable_syntax(a)],  # all plain and deliverable: kept whole
        [EmailRow(a) for a in generated],
        [EmailRow("a@example.com"), EmailRow("", skipped="no email"), EmailRow("b@example.com")],
        [EmailRow("a@example.com"), EmailRow("a@" + "d" * 60 + "." + "e" * 60 + "." + "f" * 60 + "." + "g" * 70)],
        [],
    ]
    for chunk in chunks:
        marked = mark_invalid(chunk)
        expected = [
            r if r.skipped is not None or is_deliverable_syntax(r.email) else r._replace(invalid=True) for r in chunk
        ]
        assert marked == expected
        assert all(m is r for m, r in zip(marked, chunk, strict=True) if not m.invalid)  # the same objects
    assert not any(r.invalid for r in mark_invalid(chunks[1])) and any(r.invalid for r in mark_invalid(chunks[0]))
