"""Progress bars for long tools (conversion, segment-everything, evaluation, frame extraction): counts and rates."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


class RateColumn(TextColumn):
    """Items per second, e.g. ``12.3 it/s``."""

    def __init__(self, unit: str = "it") -> None:
        super().__init__("")
        self.unit = unit

    def render(self, task):  # type: ignore[override]
        speed = task.finished_speed or task.speed
        return f"{speed:.1f} {self.unit}/s" if speed else f"- {self.unit}/s"


def progress_bar(unit: str = "it") -> Progress:
    """A rich :class:`Progress` with description, bar, ``done/total``, percent, rate, elapsed and remaining time.

    Written to standard error so that tools printing JSON on standard output stay parseable.
    """
    from rich.console import Console

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
        transient=False,
    )


def track(
    items: Iterable[T], description: str, total: int | None = None, unit: str = "it", enabled: bool = True
) -> Iterator[T]:
    """Yield ``items`` while showing a progress bar on standard error (``total``: len(items) when it has one)."""
    if not enabled:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(unit) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
