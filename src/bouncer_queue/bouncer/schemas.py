"""Wire models of the Bouncer API (v1.1): batch objects and verification results, as Bouncer sends them.

Every model keeps unknown fields (`extra="allow"`) and types enum-like values as plain strings, so a new
status, reason or flag value from Bouncer never breaks parsing; the pipeline decides what an unknown value
means. Tri-state flags are the strings "yes"/"no"/"unknown". `VerificationResult.raw` gives back the object
as received, for storing Bouncer's whole answer.

A batch download (up to 100,000 results) skips the models: `result_rows` decodes the JSON array once, element by
element, into ResultRows that keep each result's text as Bouncer sent it as `raw_json` (stored as is, never
encoded again; the decoded object is dropped once flattened), with the same strictness (a non-string where the
wire has a string is refused).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import starmap
from operator import itemgetter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bouncer_queue.storage.records import BatchEmail, ResultRow


@dataclass(frozen=True)
class BatchBody:
    """A create call's body, encoded as soon as its addresses are read: the JSON array Bouncer takes, and how many
    addresses it holds. A create waits for the database's write lock and for Bouncer's answer; holding these bytes
    (a few hundred kB for 10,000 addresses) instead of the addresses as objects, with a dict each, kept `verify`'s
    memory peak some 15 MB lower while its creates ran beside the list being stored (docs/benchmarks.md)."""

    content: bytes
    count: int

    @classmethod
    def of(cls, emails: Sequence[BatchEmail]) -> BatchBody:
        body = [{"email": e.email} if e.name is None else {"email": e.email, "name": e.name} for e in emails]
        # What httpx's json= sends, byte for byte.
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return cls(text.encode(), len(body))


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


def result_rows(text: str) -> list[ResultRow]:
    """A batch download's body (a JSON array of result objects) as ResultRows; ValueError when it is not one."""
    return list(iter_result_rows(text))


def iter_result_rows(text: str) -> Iterator[ResultRow]:
    """`result_rows` one row at a time, for a caller that interleaves other work with a long download."""
    if len(_WORDS) > _MAX_WORDS:
        _WORDS.clear()
    return starmap(_result_row, _array_elements(text))


_DECODER = json.JSONDecoder()  # its scan_once is what raw_decode calls, here without raw_decode's Python frame
_SPACE = re.compile(r"[ \t\n\r]*")
_BLANKS = frozenset(" \t\n\r")


def _array_elements(text: str) -> Iterator[tuple[Any, str]]:
    """Each element of a JSON array with its own text: decoded once by the C scanner, never encoded again."""
    scan: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
    pos = _skip(text, 0)
    if text[pos : pos + 1] != "[":
        raise ValueError("a download is a JSON array")
    pos = _skip(text, pos + 1)
    closing = text[pos : pos + 1] == "]"
    if closing:
        pos += 1
    while not closing:
        try:
            element, end = scan(text, pos)
        except StopIteration as exc:
            raise json.JSONDecodeError("Expecting value", text, exc.value) from None
        yield element, text[pos:end]
        if text[end : end + 1] == "," and text[end + 1 : end + 2] not in _BLANKS:
            pos = end + 1  # compact JSON, as Bouncer sends it: the next element starts right after the comma
            continue
        pos = _skip(text, end)
        separator = text[pos : pos + 1]
        if separator not in (",", "]"):
            raise ValueError("a download is a JSON array")
        closing = separator == "]"
        pos = _skip(text, pos + 1)
    if text[pos:].strip():
        raise ValueError("extra data after the JSON array")


def _skip(text: str, pos: int) -> int:
    """The position of the first non-blank character at or after `pos`."""
    blank = _SPACE.match(text, pos)
    return blank.end() if blank else pos


_EMPTY: dict[str, Any] = {}
_TEXT = frozenset((str, type(None)))
_NUMBER = frozenset((int, type(None)))
# A result as Bouncer documents it carries every field: three C calls take them all, where a missing one, or a
# provider given only under `dns`, takes the field-by-field path.
_TOP = itemgetter("email", "status", "reason", "domain", "account", "provider", "score", "toxic", "toxicity")
_DOMAIN = itemgetter("name", "acceptAll", "disposable", "free")
_ACCOUNT = itemgetter("role", "disabled", "fullMailbox")
_new_row = partial(tuple.__new__, ResultRow)  # ResultRow's fields in order, without NamedTuple's Python __new__
#: Bouncer's enum-like values (status, reason, the yes/no flags, toxic) as one object each, not one per row: a
#: 10,000-result download's rows take 7.8 MB instead of 12.3, and at no CPU cost measured. Emptied past
#: _MAX_WORDS, should Bouncer ever send free text there, so a long-running process cannot grow it for good.
_WORDS: dict[str | None, str | None] = {}
_word = _WORDS.setdefault
_MAX_WORDS = 1_000


def _result_row(obj: Any, raw_json: str) -> ResultRow:
    """Flatten one result object (its text kept beside it); every type is checked, in a few C-level steps."""
    try:
        email, status, reason, domain, account, provider, score, toxic, toxicity = _TOP(obj)
        texts = (reason, *_DOMAIN(domain), *_ACCOUNT(account), provider, toxic)
    except (KeyError, TypeError):
        return _any_result_row(obj, raw_json)
    if (
        type(obj) is not dict
        or type(domain) is not dict
        or type(account) is not dict
        or provider is None
        or type(email) is not str
        or type(status) is not str
        or not _TEXT.issuperset(map(type, texts))
        or not {type(score), type(toxicity)} <= _NUMBER
    ):
        return _any_result_row(obj, raw_json)  # which says what is wrong, if anything
    flags = texts[2:8]
    row: ResultRow = _new_row(
        (
            email, _word(status, status), _word(reason, reason), score, texts[1], *map(_word, flags, flags),
            provider, _word(toxic, toxic), toxicity, None, raw_json,
        )
    )  # fmt: skip
    return row


def _any_result_row(obj: Any, raw_json: str) -> ResultRow:
    """`_result_row` for any shape: fields missing or null, the provider under `dns`; ValueError for wrong types."""
    if type(obj) is not dict:
        raise ValueError("a result is not a JSON object")
    get = obj.get
    domain, account = get("domain") or _EMPTY, get("account") or _EMPTY
    provider = get("provider")
    if provider is None:  # top level in the docs, under `dns` in some examples
        dns = get("dns") or _EMPTY
        if type(dns) is not dict:
            raise ValueError("`dns` of a result is not an object")
        provider = dns.get("provider")
    if type(domain) is not dict or type(account) is not dict:
        raise ValueError("`domain` and `account` of a result must be objects")
    email, status, score, toxicity = get("email"), get("status"), get("score"), get("toxicity")
    texts = (
        get("reason"), domain.get("name"), domain.get("acceptAll"), domain.get("disposable"), domain.get("free"),
        account.get("role"), account.get("disabled"), account.get("fullMailbox"), provider, get("toxic"),
    )  # fmt: skip
    if (
        type(email) is not str
        or type(status) is not str
        or not set(map(type, texts)) <= _TEXT
        or not {type(score), type(toxicity)} <= _NUMBER
    ):
        raise ValueError("a field of a result is missing or has the wrong type")
    return ResultRow(email, status, texts[0], score, *texts[1:], toxicity, None, raw_json)
