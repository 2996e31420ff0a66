"""Progress bars for long steps, on stderr and only for a person at a terminal (a pipe, a log or
a test capturing output gets none), so stdout stays the command's result."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

Advance = Callable[[int], None]


@contextmanager
def progress_bar(description: str, total: int | None, *, unit: str = "") -> Iterator[Advance]:
    """`with progress_bar("ingesting files", n) as advance: ... advance(k)` adds k done."""
    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def running_total(advance: Advance) -> Callable[[int, int], None]:
    """A `progress(done, total)` callback (the simulator's, the chain replayer's) for a bar
    that counts increments."""
    done = 0

    def progress(n: int, _total: int) -> None:
        nonlocal done
        advance(n - done)
        done = n

    return progress
