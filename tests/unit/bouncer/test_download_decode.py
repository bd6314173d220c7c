"""A download's one-pass decode: the fast path for a result carrying every documented field gives what the
field-by-field path gives (or the same refusal), and the array is cut into the same elements however it is
spaced; both over generated shapes."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from bouncer_queue.bouncer import schemas
from bouncer_queue.bouncer.schemas import result_rows
from bouncer_queue.storage.records import ResultRow

_VALUES: list[Any] = ["yes", "no", "", "unknown", None, 0, 7, -1, True, 1.5, [], {}, ["a"], {"a": "b"}]
_TOP = ["email", "status", "reason", "domain", "account", "provider", "score", "toxic", "toxicity", "dns", "name"]


def _result(rng: random.Random) -> Any:
    obj: dict[str, Any] = {
        "email": "a@example.com",
        "status": "deliverable",
        "reason": "accepted_email",
        "domain": {"name": "example.com", "acceptAll": "no", "disposable": "no", "free": "yes"},
        "account": {"role": "no", "disabled": "no", "fullMailbox": "no"},
        "dns": {"type": "MX", "record": "mx.example.com.", "provider": "dns-provider"},
        "provider": "google.com",
        "score": 99,
        "toxic": "no",
        "toxicity": 0,
    }
    for _ in range(rng.choice([0, 0, 1, 2, 3])):
        where = rng.random()
        if where < 0.5:
            key = rng.choice(_TOP)
            if rng.random() < 0.4:
                obj.pop(key, None)
            else:
                obj[key] = rng.choice(_VALUES)
        else:
            part = rng.choice(["domain", "account", "dns"])
            inner = obj.get(part)
            if isinstance(inner, dict) and inner:
                key = rng.choice(list(inner))
                if rng.random() < 0.4:
                    del inner[key]
                else:
                    inner[key] = rng.choice(_VALUES)
    return obj if rng.random() > 0.02 else rng.choice([[obj], "x", 3, None])


def _outcome(function: Any, obj: Any) -> ResultRow | str:
    try:
        row: ResultRow = function(obj, json.dumps(obj))
    except ValueError as exc:
        return f"ValueError: {exc}"
    return row


def test_every_field_fast_path_agrees_with_the_field_by_field_path() -> None:
    rng = random.Random(11)
    objects = [_result(rng) for _ in range(4_000)]
    fast = [_outcome(schemas._result_row, obj) for obj in objects]
    assert fast == [_outcome(schemas._any_result_row, obj) for obj in objects]
    assert sum(isinstance(o, str) for o in fast) > 300 and sum(isinstance(o, ResultRow) for o in fast) > 2_000


@pytest.mark.parametrize("indent", [None, 0, 2])
@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": "), (" ,\n", ":"), (",\t\r\n ", " : ")])
def test_a_download_is_cut_into_the_same_elements_however_it_is_spaced(
    indent: int | None, separators: tuple[str, str]
) -> None:
    rng = random.Random(len(separators[0]))
    objects = [_result(random.Random(rng.random())) for _ in range(50)]
    objects = [o for o in objects if isinstance(o, dict) and isinstance(_outcome(schemas._any_result_row, o), tuple)]
    text = " \n" + json.dumps(objects, indent=indent, separators=separators) + "\r\n"
    rows = result_rows(text)
    assert [json.loads(r.raw_json or "") for r in rows] == objects
    assert all(r.raw_json and r.raw_json in text for r in rows)  # each element's text as sent
    if indent is None:
        assert [r.raw_json for r in rows] == [json.dumps(o, separators=separators) for o in objects]


@pytest.mark.parametrize("text", ["[1,]", "[{},", "[{} {}]", "[{}]]", "[{},,{}]", '[{"email":"a"},\n]', "[{}, "])
def test_broken_arrays_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        result_rows(text)


def test_enum_like_values_are_shared_between_rows_and_the_table_stays_small(monkeypatch: pytest.MonkeyPatch) -> None:
    result = {
        "email": "a@example.com", "status": "deliverable", "reason": "accepted_email",
        "domain": {"name": "example.com", "acceptAll": "no", "disposable": "no", "free": "yes"},
        "account": {"role": "no", "disabled": "no", "fullMailbox": "no"}, "provider": "google.com",
        "score": 99, "toxic": "no", "toxicity": 0,
    }  # fmt: skip
    first, second = result_rows(json.dumps([result, result]))
    assert first == second and first is not second
    shared = [*range(1, 3), *range(5, 11), 12]  # status, reason, the six flags, toxic
    assert all(first[i] is second[i] for i in shared)
    monkeypatch.setattr(schemas, "_MAX_WORDS", 5)
    result_rows(json.dumps([{**result, "reason": f"reason {n}"} for n in range(20)]))
    result_rows("[]")  # a download starts by emptying a table grown past the cap
    assert not schemas._WORDS
