"""Progress display for long stages (image encoding, queries): a rich bar on the terminal's stderr."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

Report = Callable[[str, int, int], None]  # (stage, done, total)

console = Console(stderr=True)


@contextlib.contextmanager
def stage_progress(label: str, enabled: bool = True) -> Iterator[Report | None]:
    """A ``report(stage, done, total)`` callback drawing one transient bar per stage (None when disabled)."""
    if not enabled:
        yield None
        return
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    tasks: dict[str, int] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(f"{label} {stage}", total=total)
        bars.update(tasks[stage], completed=done, total=total)

    with bars:
        yield report
