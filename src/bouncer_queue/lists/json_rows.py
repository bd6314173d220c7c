"""JSON lists: an array of addresses or of objects, or one value per line (NDJSON / JSON Lines), streamed.

The standard library has no streaming JSON parser, so `_Scanner` decodes one element at a time from a
sliding buffer with `JSONDecoder.raw_decode`: memory holds one element plus one chunk, never the whole list.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TextIO

from bouncer_queue.errors import InputError
from bouncer_queue.lists import columns as cols
from bouncer_queue.lists.rows import SkippedRow, make_row
from bouncer_queue.storage.records import EmailRow

_CHUNK_CHARS = 1 << 16
MAX_ELEMENT_CHARS = 1 << 20
_WHITESPACE = " \t\r\n"


class _Scanner:
    """A window over the text that decodes JSON values and knows the line it is on."""

    def __init__(self, text: TextIO, path: Path) -> None:
        self._text, self._path = text, path
        self._buf, self._pos, self._line = "", 0, 1
        self._decoder = json.JSONDecoder()

    @property
    def line(self) -> int:
        return self._line + self._buf.count("\n", 0, self._pos)

    def fail(self, message: str, at: int | None = None) -> InputError:
        line = self.line if at is None else self._line + self._buf.count("\n", 0, at)
        return InputError(f"{self._path}: line {line}: {message}")

    def peek(self) -> str:
        """The next non-blank character, not consumed; "" at the end of the text."""
        while True:
            while self._pos < len(self._buf) and self._buf[self._pos] in _WHITESPACE:
                self._pos += 1
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._fill():
                return ""

    def take(self) -> str:
        char = self.peek()
        self._pos += len(char)
        return char

    def value(self) -> object:
        """Decode the next value, reading more text while the value may continue past the buffer."""
        self.peek()
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as exc:
                if self._fill():
                    continue
                raise self.fail(f"JSON syntax error: {exc.msg}", exc.pos) from None
            # A number or literal that ends the buffer may go on in the next chunk.
            if end < len(self._buf) or not self._fill():
                self._pos = end
                return value

    def _fill(self) -> bool:
        if len(self._buf) - self._pos > MAX_ELEMENT_CHARS:
            raise self.fail(f"a JSON element is larger than {MAX_ELEMENT_CHARS} characters or malformed")
        chunk = self._text.read(_CHUNK_CHARS)
        if not chunk:
            return False
        self._line += self._buf.count("\n", 0, self._pos)
        self._buf, self._pos = self._buf[self._pos :] + chunk, 0
        return True


def iter_json(text: TextIO, path: Path, *, column: str | None = None) -> Iterator[EmailRow | SkippedRow]:
    """A `.json` list: a top-level array (row = position in it) or, failing that, a stream of values."""
    scanner = _Scanner(text, path)
    if scanner.peek() != "[":
        yield from _value_stream(scanner, column)
        return
    scanner.take()
    if scanner.peek() == "]":
        scanner.take()
    else:
        yield from _array_items(scanner, column)
    if scanner.peek():
        raise scanner.fail("unexpected data after the JSON array")


def iter_ndjson(text: TextIO, path: Path, *, column: str | None = None) -> Iterator[EmailRow | SkippedRow]:
    """A JSON Lines list: one address or object per line (row = its line)."""
    yield from _value_stream(_Scanner(text, path), column)


def _array_items(scanner: _Scanner, column: str | None) -> Iterator[EmailRow | SkippedRow]:
    position = 0
    while True:
        position += 1
        yield to_row(position, scanner.value(), column)
        separator = scanner.take()
        if separator == "]":
            return
        if separator != ",":
            raise scanner.fail("expected ',' or ']' after an element of the JSON array")


def _value_stream(scanner: _Scanner, column: str | None) -> Iterator[EmailRow | SkippedRow]:
    while scanner.peek():
        line = scanner.line
        yield to_row(line, scanner.value(), column)


def to_row(number: int, value: object, column: str | None = None) -> EmailRow | SkippedRow:
    """One JSON element as a row: a string is the address; an object has it under an email-like key.

    The row kept for the export is the object itself, values untouched (a bare element becomes {"email": it}).
    """
    if not isinstance(value, Mapping):
        row = {"email": value}
        if isinstance(value, str):
            return make_row(number, value, None, row)
        return SkippedRow(number, f"expected an address or an object, got {_type(value)}", row)
    keys = [str(key) for key in value]
    row = {str(key): item for key, item in value.items()}
    email_key = _pick(keys, column, cols.EMAIL_HEADERS)
    email = row[email_key] if email_key is not None else None
    if email is None:
        return SkippedRow(number, "no email", row)
    if not isinstance(email, str):
        return SkippedRow(number, f"the email is a {_type(email)}, not a string", row)
    name_key = _pick([key for key in keys if key != email_key], None, cols.NAME_HEADERS)
    name = row[name_key] if name_key is not None else None
    return make_row(number, email, name if isinstance(name, str) else None, row)


def _type(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _pick(keys: list[str], column: str | None, aliases: frozenset[str]) -> str | None:
    if column is not None:
        found = cols.find_named(keys, column)
        return None if found is None else keys[found]
    found = cols.find_by_alias(keys, aliases)
    return None if found is None else keys[found]
