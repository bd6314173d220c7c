"""Opening an input list as text: BOM-aware decoding, binary detection, and decode errors that name the line.

Every reader format gets its text through `open_text`, so encoding problems are reported one way for all of
them: a binary file before any row is parsed, a bad byte at the line where it sits.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from bouncer_queue.errors import InputError

MAX_LINE_CHARS = 1 << 20
_SNIFF_BYTES = 8192
_LOCATE_CHUNK = 1 << 16

# UTF-32 LE first: its BOM begins with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_SIGNATURES = (
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook? name it .xlsx, or pass --input-format xlsx)"),
    (b"\xd0\xcf\x11\xe0", "an Office document (an .xls workbook? save it as .xlsx or CSV)"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip-compressed file"),
)


def check_encoding(encoding: str) -> str:
    """The codec's canonical name, or InputError for a name Python does not know."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise InputError(f"unknown encoding {encoding!r} (try utf-8, utf-16, cp1252 or latin-1)") from None


@contextmanager
def open_text(path: Path, encoding: str | None = None) -> Iterator[TextIO]:
    """Open `path` as text with universal line ends kept (what `csv` needs); decode errors become InputError."""
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot open the list ({exc.strerror})") from exc
    with raw:
        head = raw.read(_SNIFF_BYTES)
        if not head:
            raise InputError(f"{path}: the file is empty")
        codec, bom_length = _choose_codec(head, encoding)
        _reject_binary(path, head, codec)
        raw.seek(bom_length)
        with io.TextIOWrapper(raw, encoding=codec, errors="strict", newline="") as text:
            try:
                yield text
            except UnicodeDecodeError:
                raise _decode_error(path, codec, bom_length) from None


def bounded_lines(text: TextIO, path: Path) -> Iterator[str]:
    """The lines of `text`, ends kept; a line past MAX_LINE_CHARS is an error, so memory stays bounded."""
    number = 0
    while line := text.readline(MAX_LINE_CHARS + 1):
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise InputError(f"{path}: line {number} is longer than {MAX_LINE_CHARS} characters; is this a list?")
        yield line


def _choose_codec(head: bytes, encoding: str | None) -> tuple[str, int]:
    if encoding is not None:
        codec = check_encoding(encoding)
        if codec == "utf-8" and head.startswith(codecs.BOM_UTF8):
            return codec, len(codecs.BOM_UTF8)
        return codec, 0
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec, len(bom)
    return "utf-8", 0


def _reject_binary(path: Path, head: bytes, codec: str) -> None:
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            raise InputError(f"{path}: this is {what}, not a text list")
    if codec.startswith(("utf-16", "utf-32")) or b"\x00" not in head:
        return
    hint = ""
    # Text in UTF-16 without a BOM has a NUL in every other byte; say so rather than just "binary".
    if head[1::2].count(0) > len(head) // 4 or head[0::2].count(0) > len(head) // 4:
        hint = " (it may be UTF-16 without a byte-order mark: try --encoding utf-16-le)"
    raise InputError(f"{path}: the file contains NUL bytes, so it is binary, not a text list{hint}")


def _decode_error(path: Path, codec: str, start: int) -> InputError:
    where = _locate_bad_bytes(path, codec, start)
    label = codec.upper()
    advice = "if the file uses another encoding, pass --encoding (for example --encoding cp1252)"
    if where is None:
        return InputError(f"{path}: the file is not valid {label}; {advice}")
    offset, line, bad = where
    return InputError(f"{path}: line {line} is not valid {label} (byte offset {offset}: 0x{bad.hex()}); {advice}")


def _locate_bad_bytes(path: Path, codec: str, start: int) -> tuple[int, int, bytes] | None:
    """Re-read the file to find the first undecodable byte: offset, line and the bytes (only on the error path)."""
    decoder = codecs.getincrementaldecoder(codec)()
    offset, lines = start, 0
    with path.open("rb") as raw:
        raw.seek(start)
        while True:
            chunk = raw.read(_LOCATE_CHUNK)
            pending = len(decoder.getstate()[0])
            try:
                lines += decoder.decode(chunk, final=not chunk).count("\n")
            except UnicodeDecodeError as exc:
                # exc.object is the decoder's pending bytes followed by this chunk.
                before = exc.object[: exc.start].decode(codec, "replace").count("\n")
                return offset - pending + exc.start, lines + before + 1, exc.object[exc.start : exc.end]
            if not chunk:
                return None
            offset += len(chunk)
