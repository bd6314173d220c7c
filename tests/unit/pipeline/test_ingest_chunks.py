"""How the ingest stage cuts its input into chunks: at every `size`-th address, skipped rows riding along in
input order, other inputs (strings, mappings) numbered by their position; compared with a row-by-row cut, for a
list (chunked) and for an async source (achunked), which cut by one rule."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest

from bouncer_queue.errors import InputError
from bouncer_queue.pipeline.ingest import EmailInput, _to_row, achunked, chunked
from bouncer_queue.storage.records import EmailRow


def _row_by_row(items: Sequence[EmailInput], size: int) -> Iterator[list[EmailRow]]:
    """The cut made one row at a time (what chunked did before it took rows with islice), without mark_invalid."""
    chunk: list[EmailRow] = []
    addresses = 0
    for index, item in enumerate(items, start=1):
        row = item if isinstance(item, EmailRow) else _to_row(item, index)
        chunk.append(row)
        addresses += row.skipped is None
        if addresses >= size:
            yield chunk
            chunk, addresses = [], 0
    if chunk:
        yield chunk


def _items(rng: random.Random, count: int) -> list[EmailInput]:
    items: list[EmailInput] = []
    for n in range(count):
        shape = rng.random()
        if shape < 0.2:
            items.append(EmailRow("", row_number=n, skipped="no email"))
        elif shape < 0.3:
            items.append(f"s{n}@example.com")
        elif shape < 0.35:
            items.append({"email": f"m{n}@example.com", "name": f"M {n}"})
        else:
            items.append(EmailRow(f"r{n}@example.com", row_number=n))
    return items


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
def test_chunks_end_at_the_size_th_address_as_a_row_by_row_cut_does(size: int) -> None:
    rng = random.Random(size)
    for count in (1, 2, 5, 49, 50, 51, 200):
        items = _items(rng, count)
        counter = [0]
        try:
            chunks = list(chunked(items, size, counter))
        except InputError:  # every row of a short input was skipped
            assert all(isinstance(i, EmailRow) and i.skipped for i in items)
            continue
        assert [[r.email for r in c] for c in chunks] == [[r.email for r in c] for c in _row_by_row(items, size)]
        assert [r.row_number for c in chunks for r in c] == [r.row_number for c in _row_by_row(items, size) for r in c]
        assert counter[0] == sum(1 for c in chunks for r in c if r.skipped is None)


def test_trailing_skipped_rows_join_the_last_chunk_and_numbers_count_every_item() -> None:
    items: list[EmailInput] = ["a@example.com", EmailRow("", skipped="no email"), "b@example.com", "c@example.com"]
    items.append(EmailRow("", skipped="no email"))
    chunks = list(chunked(items, 2, [0]))
    assert [[r.email for r in c] for c in chunks] == [["a@example.com", "", "b@example.com"], ["c@example.com", ""]]
    assert [r.row_number for r in chunks[0]] == [1, None, 3]
    assert chunks[1][0].row_number == 4


def test_a_list_of_only_skipped_rows_is_refused() -> None:
    with pytest.raises(InputError, match="no email addresses"):
        list(chunked([EmailRow("", skipped="no email")] * 3, 2, [0]))


async def _source(items: Sequence[EmailInput], pulled: list[int] | None = None) -> AsyncIterator[EmailInput]:
    for n, item in enumerate(items, start=1):
        if pulled is not None:
            pulled[0] = n
        yield item


def _cut(chunks: list[list[EmailRow]]) -> list[list[tuple[str, int | None, str | None]]]:
    return [[(r.email, r.row_number, r.invalid) for r in c] for c in chunks]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
async def test_an_async_source_is_cut_as_a_list_is(size: int) -> None:
    rng = random.Random(size + 100)
    for count in (1, 2, 5, 49, 50, 51, 200):
        items = _items(rng, count)
        listed, streamed = [0], [0]
        try:
            expected = list(chunked(items, size, listed))
        except InputError:
            with pytest.raises(InputError, match="no email addresses"):
                _ = [c async for c in achunked(_source(items), size, streamed)]
            continue
        got = [c async for c in achunked(_source(items), size, streamed)]
        assert _cut(got) == _cut(expected)
        assert streamed == listed


async def test_an_async_chunk_is_yielded_when_its_last_address_arrives_not_after_more() -> None:
    # The streaming ingest stores a chunk while the source waits for more: a chunk held for the next item would
    # wait on a source that waits on it.
    items: list[EmailInput] = ["a@example.com", EmailRow("", skipped="no email"), "b@example.com", "c@example.com"]
    pulled = [0]
    seen = []
    async for chunk in achunked(_source(items, pulled), 2, [0]):
        seen.append((pulled[0], [r.email for r in chunk]))
    assert seen == [(3, ["a@example.com", "", "b@example.com"]), (4, ["c@example.com"])]
