"""The rows storing a download hands to the bulk path, without a database: the same rows, in the same order, as
a tuple built field by field (the last of a repeated address wins; Bouncer's text kept, else the object encoded)."""

from __future__ import annotations

import json
import random
from datetime import datetime
from operator import attrgetter

from bouncer_queue.storage.records import ResultRow
from bouncer_queue.storage.results import _RESULT_COLUMNS, RESULT_FIELDS, _result_rows

NOW = datetime(2026, 11, 30, 5, 0)


def _field_by_field(results: list[ResultRow]) -> list[tuple[object, ...]]:
    by_email: dict[str, tuple[object, ...]] = {}
    for r in results:
        email = r.email.strip().lower()
        raw = r.raw_json if r.raw_json is not None else json.dumps(r.raw or {})
        by_email[email] = ("req", email, 7, *attrgetter(*RESULT_FIELDS)(r), raw, NOW)
    return [by_email[email] for email in sorted(by_email)]


def test_the_verdict_fields_sit_side_by_side_in_a_result_row() -> None:
    start = ResultRow._fields.index(RESULT_FIELDS[0])
    assert ResultRow._fields[start : start + len(RESULT_FIELDS)] == RESULT_FIELDS


def test_result_rows_are_the_field_by_field_rows() -> None:
    rng = random.Random(5)
    results = [
        ResultRow(
            rng.choice([f"a{i}@x.org", f" A{i}@X.org ", f"b{i % 7}@x.org"]),
            rng.choice(["deliverable", "risky"]),
            rng.choice([None, "accepted_email"]),
            rng.choice([None, 0, 90]),
            *(rng.choice([None, "yes", "x.org"]) for _ in range(9)),
            rng.choice([None, 3]),
            raw=rng.choice([None, {"email": f"a{i}"}]),
            raw_json=rng.choice([None, f'{{"email":"a{i}"}}']),
        )
        for i in range(400)
    ]
    with_text = [r._replace(raw_json=r.raw_json or "{}") for r in results]
    for chunk in (results, with_text, results[:1], []):
        rows = _result_rows("req", 7, chunk, NOW)
        assert rows == _field_by_field(chunk)
        assert all(len(row) == len(_RESULT_COLUMNS) for row in rows)
