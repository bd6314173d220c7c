"""The rows ingest hands to the bulk path, without a database: every `extra` encoded exactly as json.dumps
encodes it, whichever way the chunk is encoded, and each EmailRow's fields in the Bouncer_Queue column order."""

from __future__ import annotations

import json
import random
from datetime import datetime
from typing import Any

import pytest

from bouncer_queue.domain import Priority
from bouncer_queue.storage import ingest
from bouncer_queue.storage.ingest import _QUEUE_COLUMNS, _json, _json_texts, _queue_rows
from bouncer_queue.storage.records import EmailRow, RequestInfo

_AWKWARD = ['say "hi"', "back\\slash", "\\u0000", "\\\\u0000x", "\x00", "a\x00b", "tab\t", "new\nline", "\r", "%s"]
_AWKWARD += ["%(x)s", "100%", "Zürich ☃ 🎉", "\u2028", "\ud800", "", " ", "\x1f\x7f", "\\", '"', "\\u00"]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice([*_AWKWARD, "a", "b", "1", " "]) for _ in range(rng.randint(0, 4)))


def _chunks() -> list[list[Any]]:
    rng = random.Random(9)
    same = [{"email": f"p{i}@example.com", "name": f"P {i}", "city": "X"} for i in range(50)]
    awkward_headers = ["e%mail", 'say "hi"', "", "Zürich", "\x00", "%s", "a\\u0000"]
    chunks: list[list[Any]] = [
        same,
        [{h: _text(rng) for h in awkward_headers} for _ in range(300)],
        [{"email": _text(rng)} for _ in range(300)],
        [{"b": "1", "a": "2"}, {"a": "2", "b": "1"}],  # the same headers in another order
        [{"email": "a@x.com"}, {"email": "b@x.com", "city": "Y"}],  # a short row
        [{"email": "a@x.com"}, None],
        [{}, {}],
        [None, None],
        [{"n": 1}, {"n": 2}],
        [{"nested": {"a": [1, None]}, "nan": float("nan")}],
        [{1: "a"}, {1: "b"}],
        [{"e": "a\x00b"}, {"e": "c"}],  # a separator inside a cell
        [{"e": "\\u0000"}, {"e": "\\u0000"}],  # the separator's escape spelled out
        [],
    ]
    return chunks


@pytest.mark.parametrize("chunk", _chunks())
def test_extras_are_encoded_as_json_dumps_encodes_them(chunk: list[Any]) -> None:
    expected = [None if value is None else json.dumps(dict(value)) for value in chunk]
    assert _json_texts(chunk) == expected
    assert [_json(value) for value in chunk] == expected


def test_a_chunk_of_text_rows_is_encoded_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(3)
    plain = [t for t in _AWKWARD if "\x00" not in t and "\\u0000" not in t]
    headers = ("a%", "b", "é")
    chunk: list[Any] = [{h: rng.choice(plain) + _text(rng).replace("\x00", "") for h in headers} for _ in range(500)]
    chunk = [row for row in chunk if not any("\\u0000" in cell for cell in row.values())]
    expected = [json.dumps(value) for value in chunk]
    monkeypatch.setattr(ingest, "_json", None)  # the value-by-value path would fail
    assert _json_texts(chunk) == expected


def test_a_value_json_cannot_encode_raises_json_dumps_error() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        _json_texts([{"when": datetime(2026, 1, 1)}])


def test_queue_rows_carry_each_row_s_fields_in_column_order() -> None:
    request = RequestInfo(request_id="req", user_id="ann", priority=Priority.HIGH)
    now = datetime(2026, 11, 30, 5, 0)
    chunk = [
        EmailRow("a@example.com", "Ann", 2, {"email": "a@example.com", "name": "Ann"}),
        EmailRow("bad", None, 3, {"email": "bad", "name": ""}, invalid=True),
        EmailRow("c@example.com", None, None, None),
    ]
    placed = _queue_rows(request, [chunk[0], chunk[2]], 7, now, invalid=False)
    mixed = _queue_rows(request, chunk, 7, now, invalid=True)

    assert all(len(row) == len(_QUEUE_COLUMNS) for row in mixed)
    first = dict(zip(_QUEUE_COLUMNS, mixed[0], strict=True))
    assert first == {
        "request_id": "req",
        "user_id": "ann",
        "email": "a@example.com",
        "name": "Ann",
        "row_number": 2,
        "extra": '{"email": "a@example.com", "name": "Ann"}',
        "priority": int(Priority.HIGH),
        "status": "batched",
        "batch_id": 7,
        "created_at": now,
        "updated_at": now,
    }
    assert [(r[7], r[8]) for r in mixed] == [("batched", 7), ("invalid", None), ("batched", 7)]
    assert placed == [mixed[0], mixed[2]]
    assert mixed[2][5] is None
