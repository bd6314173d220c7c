"""One batch per address per request, while the list is stored chunk by chunk (ingest.py).

Every input row is stored, but an address (its lower-cased key, the one results are stored under) is sent once
per request. Within a chunk, its batch sends each address once (`batch_emails`). Across chunks, `KeyHashes`
keeps an 8-byte hash of every key stored, which also names the batch it went into, so a chunk knows which of its
keys may have come before: a list without repeats shows none and pays nothing more. Those few are checked exactly
in the database, in the batches their hashes point to (so a list of many repeats reads a few batches per chunk,
not the whole request), and each row whose key is stored already joins its first occurrence
(`join_first_occurrences`), inside the chunk's transaction.

The first occurrence may be anywhere by then: its batch pending, at Bouncer, downloaded, dead or cancelled, or
its row answered by the result cache (no batch). The row takes the state its batch's rows have, under a lock of
that batch's row. Every transaction that settles or moves a batch's rows changes (or locks) the batch row first
(results.py locks it before settling, batches.py updates it before its rows), so a row joining a batch is either
seen by the settle that follows or settled here from the batch's stored results: never left `batched` for good.
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Iterable, Mapping

from sqlalchemy import Update, case, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bouncer_queue.domain import BatchState, EmailState
from bouncer_queue.storage.tables import BatchModel, QueueModel, ResultModel, utcnow

#: Keys per IN list: below every engine's limit on bound parameters.
_KEYS_PER_QUERY = 2_000
_NOT_SENT = (EmailState.SKIPPED.value, EmailState.INVALID.value)
#: The state a row joining a batch takes, by the batch's state (downloaded: by its result, see below).
_JOINED_STATE = {
    BatchState.PENDING.value: EmailState.BATCHED.value,
    BatchState.SUBMITTING.value: EmailState.BATCHED.value,
    BatchState.FAILED.value: EmailState.BATCHED.value,
    BatchState.QUEUED.value: EmailState.SUBMITTED.value,
    BatchState.PROCESSING.value: EmailState.SUBMITTED.value,
    BatchState.COMPLETED.value: EmailState.SUBMITTED.value,
    BatchState.DEAD.value: EmailState.DEAD.value,
    BatchState.CANCELLED.value: EmailState.CANCELLED.value,
}
#: Batches not yet at Bouncer: their quantity still counts their rows.
_UNSENT = (BatchState.PENDING.value, BatchState.FAILED.value)


#: The low bits of a key's hash pick its bucket, so the stored value carries its chunk's ordinal there instead.
_LOW = 0xFFFF


class KeyHashes:
    """The hash of every address key stored so far (8 bytes an address), in up to 65,536 small arrays, so a lookup
    scans a few dozen. The low 16 bits of a hash pick its array; in their place the stored value keeps the ordinal
    (modulo 65,536) of the chunk it came in, which names the batch it went into. A hash never seen proves a key
    new; a hash seen before only says the exact check in the database is worth asking, and where to look first."""

    def __init__(self) -> None:
        self._buckets: dict[int, array[int]] = {}
        self._chunk_batches: list[int] = []

    def seen(self, keys: Iterable[str]) -> dict[str, set[int]]:
        """The keys (lower-cased addresses) whose hash an earlier `add` brought in, each with the batches (0: none)
        those earlier keys may have gone into."""
        buckets = self._buckets
        found: dict[str, set[int]] = {}
        for key in keys:
            hashed = hash(key)
            bucket = buckets.get(hashed & _LOW)
            if bucket is None:
                continue
            high = hashed >> 16
            ordinals = [value & _LOW for value in bucket if value >> 16 == high]
            if ordinals:
                chunks = self._chunk_batches
                found[key] = {batch for ordinal in ordinals for batch in chunks[ordinal :: _LOW + 1]}
        return found

    def add(self, keys: Iterable[str], batch_id: int | None) -> None:
        """Note the keys of one chunk, stored in `batch_id` (None: no batch)."""
        # str.lower folds at least what the databases' lower() does, so keys equal in SQL hash alike.
        buckets = self._buckets
        ordinal = len(self._chunk_batches) & _LOW
        self._chunk_batches.append(batch_id or 0)
        for key in keys:
            hashed = hash(key)
            bucket = buckets.get(hashed & _LOW)
            if bucket is None:
                bucket = buckets[hashed & _LOW] = array("q")
            bucket.append((hashed & ~_LOW) | ordinal)


async def join_first_occurrences(
    conn: AsyncConnection, request_id: str, batch_id: int, keys: Mapping[str, set[int]]
) -> int:
    """Move each row of the new batch `batch_id` whose key (one of `keys`, with the batches where an equal hash
    went) the request stored before into its first occurrence's batch, in that batch's state, or answer it from
    the request's cached answer; how many rows moved. The caller recounts the new batch."""
    firsts = await _first_batches(conn, request_id, batch_id, keys)
    by_batch: dict[int | None, list[str]] = defaultdict(list)
    for key, first in firsts.items():
        by_batch[first].append(key)
    moved = 0
    now = utcnow()
    # Batch rows locked in id order: two requests' chunks never wait on each other's batches anyway, but cheap.
    for first in sorted(b for b in by_batch if b is not None):
        moved += await _join_batch(conn, batch_id, first, by_batch[first])
    for part in _parts(by_batch.get(None, [])):
        # The first occurrence was answered by the result cache: the answer is the request's already.
        cached = _rows_of(batch_id, part).values(batch_id=None, status=EmailState.COMPLETED.value, updated_at=now)
        moved += int((await conn.execute(cached)).rowcount or 0)
    return moved


async def _first_batches(
    conn: AsyncConnection, request_id: str, batch_id: int, keys: Mapping[str, set[int]]
) -> dict[str, int | None]:
    """Of `keys`, those stored before this chunk, each with the batch its rows are in (None: cache-answered).
    Looked for first in the batches their hashes point to (an index on batch_id: a few batches' rows), then, for
    the rest (cache-answered ones, and hashes that were alike by chance), among all the request's rows."""
    lowered = func.lower(QueueModel.email)
    sent = QueueModel.status.not_in(_NOT_SENT)
    found: dict[str, int | None] = {}
    hinted = sorted({b for batches in keys.values() for b in batches} - {0, batch_id})
    if hinted:
        for part in _parts(sorted(keys)):
            query = select(lowered, func.min(QueueModel.batch_id)).where(
                QueueModel.batch_id.in_(hinted), lowered.in_(part), sent
            )
            for key, first in (await conn.execute(query.group_by(lowered))).all():
                found[key] = first
    rest = sorted(set(keys) - set(found))
    for part in _parts(rest):
        query = (
            select(lowered, func.min(QueueModel.batch_id))
            .where(QueueModel.request_id == request_id, lowered.in_(part), sent)
            .where(or_(QueueModel.batch_id.is_(None), QueueModel.batch_id != batch_id))
            .group_by(lowered)
        )
        for key, first in (await conn.execute(query)).all():
            found[key] = first
    return found


async def _join_batch(conn: AsyncConnection, batch_id: int, first: int, keys: list[str]) -> int:
    status = await conn.scalar(select(BatchModel.status).where(BatchModel.id == first).with_for_update())
    now = utcnow()
    moved = 0
    for part in _parts(keys):
        rows = _rows_of(batch_id, part)
        if status == BatchState.DOWNLOADED.value:
            # Its results are stored: settle the row now, as results.py settled its batch (one UPDATE, which reads
            # the latest committed results on every engine).
            answered = exists().where(
                ResultModel.request_id == QueueModel.request_id, ResultModel.email == func.lower(QueueModel.email)
            )
            state = case((answered, EmailState.COMPLETED.value), else_=EmailState.FAILED.value)
            query = rows.values(batch_id=first, status=state, updated_at=now)
        else:
            joined = _JOINED_STATE.get(str(status), EmailState.BATCHED.value)
            query = rows.values(batch_id=first, status=joined, updated_at=now)
        moved += int((await conn.execute(query)).rowcount or 0)
    if moved and status in _UNSENT:
        await conn.execute(
            update(BatchModel).where(BatchModel.id == first).values(quantity=BatchModel.quantity + moved)
        )
    return moved


def _rows_of(batch_id: int, keys: list[str]) -> Update:
    return (
        update(QueueModel)
        .where(QueueModel.batch_id == batch_id, func.lower(QueueModel.email).in_(keys))
        .execution_options(synchronize_session=False)
    )


def _parts(keys: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        yield keys[start : start + _KEYS_PER_QUERY]
