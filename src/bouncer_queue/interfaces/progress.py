"""Progress bars for the long steps of a command (storing a list, waiting for it, exporting it), on stderr.

Standard output is kept for what a command answers (a request id, a CSV), so it can be piped; progress goes to
stderr, and only when stderr is a terminal: in a log file or a CI job a bar is noise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

T = TypeVar("T")

#: Rows between two updates of a counting bar: often enough to look alive, rarely enough to cost nothing.
UPDATE_EVERY_ROWS = 1_000


def counter_bar(console: Console, label: str) -> Progress:
    """A spinner with a running count, for a step whose total is not known in advance."""
    return Progress(
        SpinnerColumn(),
        TextColumn(f"[bold]{label}"),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def ratio_bar(console: Console, label: str) -> Progress:
    """A bar with done/total and a detail column, for a step whose total is known."""
    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


def counting(items: Iterable[T], bar: Progress, check: Callable[[], object] | None = None) -> Iterator[T]:
    """`items`, advancing a task of `bar` as they go by; `check` is called with each update (every
    UPDATE_EVERY_ROWS items) and may raise to end the iteration there (a stop signal, say)."""
    task = bar.add_task("count", total=None)
    count = 0
    for count, item in enumerate(items, start=1):
        yield item
        if count % UPDATE_EVERY_ROWS == 0:
            bar.update(task, completed=count)
            if check is not None:
                check()
    bar.update(task, completed=count)
