"""Simulated batches and their clock-driven life: queued → processing → completed (or failed).

Progress is computed lazily: `advance(batches, now, ...)` replays, in time order, every start and end that
happened up to `now` (at most `max_parallel` processing at once, FIFO by creation), so the same clock readings
always give the same states and no background task is needed. A batch's results, and whether it fails, are
fixed at creation; `processed` grows with `speed` from its start time. The result objects themselves are
computed when first needed (`verdict`, a pure function of the address), or ahead of that by `compute(n)`:
a create then answers at once, whatever its size, as Bouncer does, instead of holding every other request while
10,000 verdicts are drawn. Each result's JSON text is made with it, so a download sends text made while the batch
ran: encoding 10,000 results at the download took some 50 ms of a core that the system measured shares with the
simulator (Bouncer's own servers do that work elsewhere).

Bouncer documents no status for a batch it gave up on. A batch drawn to fail (`batch_fail_rate`) ends in
"failed": our client treats every undocumented status as a failed batch, so any such word exercises the same
path. A failed batch has no `completed` time and no `credits`, and its download answers 400 like a running one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bouncer_queue.simulator.results import iso_ms

QUEUED, PROCESSING, COMPLETED, FAILED = "queued", "processing", "completed", "failed"
#: One result object as the API's JSON responses encode it (Starlette's JSONResponse, byte for byte).
#: json.dumps with these arguments builds an encoder per call; one built once encodes the same (a fifth less CPU
#: for every result the simulator makes).
json_text = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode
STATUSES = ("deliverable", "risky", "undeliverable", "unknown")


@dataclass
class Batch:
    """One batch of one key. `chargeable[i]` says whether result i costs a credit once verified."""

    id: str
    key: str
    created: float
    #: The batch's unique (address, name) pairs, in order; `verdict` turns one into its result object.
    entries: list[tuple[str, str | None]]
    verdict: Callable[[str, str | None], dict[str, Any]]
    chargeable: list[bool]
    duplicates: int
    reserved: int
    callback: str | None = None
    status: str = QUEUED
    started: float | None = None
    completed: float | None = None
    #: Set by finish: the emails verified when it stopped; the rest are never verified.
    stopped_at: int | None = None
    credits_used: int | None = None
    extra_charge: int = field(default=0)
    #: Drawn at creation: the batch ends `failed` instead of `completed`.
    fails: bool = False
    #: Drawn at creation: the create call is answered by closing the connection.
    answer_dropped: bool = False
    _results: list[dict[str, Any]] = field(default_factory=list, repr=False)
    #: `json_text` of each result, made with it.
    _texts: list[str] = field(default_factory=list, repr=False)

    @property
    def quantity(self) -> int:
        return len(self.entries)

    @property
    def results(self) -> list[dict[str, Any]]:
        """Every result object, in address order."""
        self.compute(self.quantity)
        return self._results

    @property
    def computed(self) -> int:
        """How many result objects exist so far."""
        return len(self._results)

    def results_upto(self, count: int) -> list[dict[str, Any]]:
        """The first `count` result objects."""
        self.compute(count)
        return self._results[:count]

    def compute(self, count: int) -> bool:
        """Make sure the first `count` results exist; True while some are still missing after that."""
        done = len(self._results)
        if done < count:
            new = [self.verdict(email, name) for email, name in self.entries[done:count]]
            self._results.extend(new)
            self._texts.extend(map(json_text, new))
        return len(self._results) < self.quantity

    def texts_upto(self, count: int) -> list[str]:
        """The JSON texts of the first `count` result objects."""
        self.compute(count)
        return self._texts[:count]

    @property
    def verified(self) -> int:
        """Emails verified once completed: all, or those done before finish stopped it."""
        return self.quantity if self.stopped_at is None else self.stopped_at

    def end_time(self, speed: float) -> float:
        assert self.started is not None, "only a started batch has an end time"
        return self.started + self.quantity / speed

    def processed(self, now: float, speed: float) -> int:
        """Emails verified by `now` (monotonic; the whole batch once completed, unless finished early)."""
        if self.status == COMPLETED:
            return self.verified
        if self.started is None:
            return 0
        return min(self.quantity, max(0, int((now - self.started) * speed)))

    def stats(self, processed: int) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for result in self.results_upto(processed):
            counts[result["status"]] = counts.get(result["status"], 0) + 1
        return counts

    def view(self, now: float, speed: float, *, with_stats: bool) -> dict[str, Any]:
        """The batch object as Bouncer returns it from create and status."""
        body: dict[str, Any] = {"batchId": self.id, "created": iso_ms(self.created)}
        if self.started is not None:
            body["started"] = iso_ms(self.started)
        if self.completed is not None:
            body["completed"] = iso_ms(self.completed)
        body.update(status=self.status, quantity=self.quantity, duplicates=self.duplicates)
        if self.credits_used is not None:
            body["credits"] = self.credits_used
        if with_stats:
            processed = self.processed(now, speed)
            body.update(processed=processed, stats=self.stats(processed))
        return body


def settle(batch: Batch, *, charge_unknown: bool) -> int:
    """Fix the credits a completed batch used; return the refund owed on its reservation."""
    done = batch.verified
    used = batch.extra_charge + sum(
        1
        for result, paid in zip(batch.results_upto(done), batch.chargeable[:done], strict=True)
        if paid and (charge_unknown or result["status"] != "unknown")
    )
    batch.credits_used = used
    return batch.reserved - used


def _next_event(batches: Sequence[Batch], cursor: float, config: _Timing) -> tuple[float, Batch] | None:
    running = [b for b in batches if b.status == PROCESSING]
    events = [(b.end_time(config.speed), b) for b in running]
    if len(running) < config.max_parallel:
        waiting = [b for b in batches if b.status == QUEUED]
        if waiting:
            first = min(waiting, key=lambda b: b.created)
            events.append((max(first.created + config.queue_delay, cursor), first))
    return min(events, key=lambda event: event[0]) if events else None


@dataclass(frozen=True)
class _Timing:
    speed: float
    max_parallel: int
    queue_delay: float


def advance(
    batches: Sequence[Batch],
    now: float,
    *,
    speed: float,
    max_parallel: int,
    queue_delay: float,
    on_end: Callable[[Batch], None],
) -> None:
    """Apply, in time order, every start and end (completed or failed) of one key's batches up to `now`."""
    timing = _Timing(speed, max_parallel, queue_delay)
    cursor = float("-inf")
    while (event := _next_event(batches, cursor, timing)) is not None and event[0] <= now:
        cursor, batch = event
        if batch.status == QUEUED:
            batch.status, batch.started = PROCESSING, cursor
        elif batch.fails:
            batch.status = FAILED
            on_end(batch)
        else:
            batch.status, batch.completed = COMPLETED, cursor
            on_end(batch)
