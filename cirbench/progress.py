"""Progress of long stages (image encoding, queries, caption masking, training): one place for every bar.

On a terminal's stderr: a rich bar. Anywhere else (SLURM, ``> log``, a pipe) a bar prints nothing until it ends, so
``PlainProgress`` writes a plain line instead, at most every ``PLAIN_INTERVAL_S`` seconds or ``PLAIN_EVERY_PERCENT``
percent of a stage, and when it completes: the stage, count/total, rate and time left.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cirbench.console import is_terminal, make_console
from cirbench.threads import say_pending

Report = Callable[[str, int, int], None]  # (stage, done, total)

PLAIN_INTERVAL_S = 10.0  # a plain line at least this often while a stage advances ...
PLAIN_EVERY_PERCENT = 10  # ... and each time it crosses a multiple of this percentage (0: time only)


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` (or ``m:ss``), as a log line reads best."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class PlainProgress:
    """Progress as plain lines for logs: ``<stage>: <done>/<total> <unit> (<pct>%) | <rate> <unit>/s | eta <time>``.

    Why not a bar: outside a terminal a bar is drawn once, at the end. ``clock`` is injectable so tests need no
    sleeping. A stage's rate counts from when the previous stage ended (or this object was made) and from its
    ``starts`` count (a resumed run does not count the steps it had done before).
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        interval_s: float = PLAIN_INTERVAL_S,
        every_percent: float = PLAIN_EVERY_PERCENT,
        clock: Callable[[], float] = time.monotonic,
        starts: dict[str, int] | None = None,
    ):
        self.stream, self.interval_s, self.every_percent, self.clock = stream, interval_s, every_percent, clock
        self.starts = dict(starts or {})
        self._stages: dict[str, dict[str, Any]] = {}
        self._began = clock()

    def update(self, stage: str, done: int, total: int, extra: str = "", unit: str = "") -> str | None:
        """Record progress; returns the line written (None when it is not yet time for one)."""
        now = self.clock()
        state = self._stages.get(stage)
        if state is None:
            n0 = self.starts.get(stage, 0)
            state = self._stages[stage] = {"t0": self._began, "n0": n0, "last_t": self._began, "finished": False}
            state["bucket"] = self._bucket(n0, total)
        if state["finished"]:
            return None
        bucket = self._bucket(done, total)
        complete = total > 0 and done >= total
        due = complete or now - state["last_t"] >= self.interval_s or bucket > state["bucket"]
        if not due:
            return None
        state.update(last_t=now, bucket=bucket, finished=complete)
        if complete:
            self._began = now  # the next stage starts here
        elapsed, counted = now - state["t0"], done - state["n0"]
        rate = counted / elapsed if elapsed > 0 and counted > 0 else None
        if complete:
            eta = "done"
        elif rate:
            eta = format_duration((total - done) / rate)
        else:
            eta = "?"
        unit_text = f" {unit}" if unit else ""
        pct = f" ({100 * done / total:.0f}%)" if total > 0 else ""
        rate_text = f"{rate:,.1f}{unit_text}/s" if rate else "?/s"
        line = f"{stage}: {done}/{total}{unit_text}{pct} | {rate_text} | eta {eta}"
        if complete:
            line += f" | {format_duration(elapsed)} elapsed"
        if extra:
            line += f" | {extra}"
        self.write(line)
        return line

    def write(self, line: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write(line + "\n")
        stream.flush()

    def _bucket(self, done: int, total: int) -> int:
        if total <= 0 or self.every_percent <= 0:
            return 0
        return int(100 * done / total // self.every_percent)


def note(line: str) -> None:
    """One plain status line on stderr before a step that may take a while (loading a model), so a run is never
    silent for long before its first progress line; on a terminal and in a log alike."""
    say_pending()  # the command's thread choice (cirbench.threads), said once as work starts
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


@contextlib.contextmanager
def stage_progress(label: str, enabled: bool = True) -> Iterator[Report | None]:
    """A ``report(stage, done, total)`` callback: one transient bar per stage on a terminal, else plain lines
    (``PlainProgress``); None when disabled."""
    if not enabled:
        yield None
        return
    say_pending()  # the command's thread choice (cirbench.threads), said once as work starts
    if not is_terminal(stderr=True):
        plain = PlainProgress()
        yield lambda stage, done, total: plain.update(f"{label} {stage}", done, total)
        return
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=make_console(stderr=True),
        transient=True,
    )
    tasks: dict[str, int] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(f"{label} {stage}", total=total)
        bars.update(tasks[stage], completed=done, total=total)

    with bars:
        yield report


class StepProgress:
    """A training loop's progress (``with``): a rich bar with free text on a terminal, else ``PlainProgress``
    lines; ``note`` prints one line above the bar (validation results)."""

    def __init__(self, enabled: bool, label: str, total: int, start: int = 0, unit: str = "steps"):
        self.enabled, self.label, self.total, self.start, self.unit = enabled, label, total, start, unit
        self.plain: PlainProgress | None = None
        self.bar: Progress | None = None

    def __enter__(self) -> StepProgress:
        if not self.enabled:
            return self
        if not is_terminal(stderr=True):
            self.plain = PlainProgress(starts={self.label: self.start})
            return self
        from rich.progress import MofNCompleteColumn

        self.bar = Progress(
            TextColumn(f"[bold]{self.label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=make_console(stderr=True),
        )
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=self.total, completed=self.start, info="")
        return self

    def update(self, done: int, info: str = "") -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done, info=info)
        elif self.plain is not None:
            self.plain.update(self.label, done, self.total, extra=info, unit=self.unit)

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text, highlight=False)
        elif self.plain is not None:
            self.plain.write(text)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
