"""API token scopes and hashing: admin may do everything, submit may also read, read only reads."""

from __future__ import annotations

import pytest

from bouncer_queue.access import Scope, allows, hash_token, new_token, parse_scopes, public_prefix
from bouncer_queue.errors import InputError


@pytest.mark.parametrize(
    ("granted", "needed", "allowed"),
    [
        (["admin"], Scope.READ, True),
        (["admin"], Scope.SUBMIT, True),
        (["submit"], Scope.READ, True),
        (["submit"], Scope.ADMIN, False),
        (["read"], Scope.SUBMIT, False),
        (["read", "submit"], Scope.SUBMIT, True),
        ([], Scope.READ, False),
        (["bogus"], Scope.READ, False),
    ],
)
def test_scopes_nest(granted: list[str], needed: Scope, allowed: bool) -> None:
    assert allows(granted, needed) is allowed


def test_scopes_are_parsed_from_repeated_or_comma_separated_names() -> None:
    assert parse_scopes(["read,submit", "READ"]) == (Scope.READ, Scope.SUBMIT)
    with pytest.raises(InputError, match="valid: read, submit, admin"):
        parse_scopes(["write"])
    with pytest.raises(InputError, match="at least one"):
        parse_scopes([" "])


def test_tokens_are_random_and_only_their_hash_and_prefix_are_kept() -> None:
    first, second = new_token(), new_token()
    assert first != second and first.startswith("bq_") and len(first) > 40
    assert len(hash_token(first)) == 64 and first not in hash_token(first)
    assert public_prefix(first) == first[:10]
