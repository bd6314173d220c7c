"""Decoding lists: BOMs, UTF-16, a wrong encoding named at its line, binary files."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from bouncer_queue.errors import InputError
from bouncer_queue.lists import read_list

TEXT = "email,name\nzoe@example.com,Zoë Dubois\nbjorn@example.com,Björn\n"
EXPECTED = [("zoe@example.com", "Zoë Dubois"), ("bjorn@example.com", "Björn")]


def _read(path: Path, encoding: str | None = None) -> list[tuple[str, str | None]]:
    return [(row.email, row.name) for row in read_list(path, encoding=encoding)]


@pytest.mark.parametrize(
    ("bom", "codec"),
    [
        (b"", "utf-8"),
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
        (codecs.BOM_UTF32_LE, "utf-32-le"),
    ],
)
def test_bom_selects_the_encoding_and_is_not_part_of_the_header(tmp_path: Path, bom: bytes, codec: str) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(bom + TEXT.encode(codec))

    assert _read(path) == EXPECTED


def test_non_utf8_file_names_line_offset_and_encoding_option(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(TEXT.encode("cp1252"))

    with pytest.raises(InputError) as caught:
        _read(path)

    message = caught.value.message
    assert "list.csv: line 2 is not valid UTF-8 (byte offset 29: 0xeb)" in message
    assert "--encoding" in message


def test_bad_byte_far_into_a_large_file_is_located(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    good = b"".join(b"user%d@example.com\n" % i for i in range(20_000))
    path.write_bytes(good + b"caf\xe9@example.com\n")

    with pytest.raises(InputError, match=rf"line 20001 is not valid UTF-8 \(byte offset {len(good) + 3}: 0xe9\)"):
        _read(path)


def test_encoding_option_reads_legacy_files(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(TEXT.encode("cp1252"))

    assert _read(path, encoding="cp1252") == EXPECTED


def test_unknown_encoding_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(TEXT, encoding="utf-8")

    with pytest.raises(InputError, match="unknown encoding 'klingon'"):
        read_list(path, encoding="klingon")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04" + bytes(200), r"a ZIP archive \(an \.xlsx workbook\? name it \.xlsx, or pass --input-format"),
        (b"%PDF-1.7\n" + bytes(range(256)), "a PDF document"),
        (bytes(range(256)) * 4, "contains NUL bytes, so it is binary"),
    ],
)
def test_binary_files_are_rejected_before_reading(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(content)

    with pytest.raises(InputError, match=message):
        _read(path)


def test_utf16_without_bom_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(TEXT.encode("utf-16-le"))

    with pytest.raises(InputError, match="may be UTF-16 without a byte-order mark"):
        _read(path)
    assert _read(path, encoding="utf-16-le") == EXPECTED
