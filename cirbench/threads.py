"""How many torch threads a process uses: one rule for ``train``, ``eval``, ``demo`` and the perf scripts.

Why a rule and not torch's default: torch takes every core, and on a shared machine its contended small ops wait on
each other. 100 LinCIR steps on the shapes world (batch 64, CPU) took 38.8 s and 104.5 s with torch's default (2
threads) on a busy 2-core machine, and 6.4 s and 4.2 s with one thread, at the same loss; the rule chose 1 there
(3.1 s, twice).
Too few threads costs at most the idle cores; too many costs several times the run, so the rule leans low:

1. ``--threads N`` when given;
2. else ``OMP_NUM_THREADS`` when set (the user's own choice; torchrun sets 1 per process);
3. else the cores this process may use less the busy ones (the 1-minute load average, rounded), shared among this
   node's torchrun processes (``LOCAL_WORLD_SIZE``), and at least 1.

Every command records the number with its results and prints its choice in one line (``ThreadChoice.line``) when
its work starts (``announce``, then ``say_pending`` from the first progress note): a command that stops at a
check before any work still ends in its one line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

ENV = "OMP_NUM_THREADS"
HELP = (
    "torch CPU threads (default: chosen from the free cores: the usable cores less the 1-minute load average, "
    f"at least 1; {ENV} when set)."
)


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count and why it was chosen (``--threads``, ``OMP_NUM_THREADS=2``, ``2 cores, load 1.8: ...``)."""

    threads: int
    why: str

    def line(self) -> str:
        return f"threads: {self.threads} ({self.why})"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a SLURM or container limit), else every core."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def load_average() -> float | None:
    """The 1-minute load average, or None where the system has none (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _positive(value: str | None) -> int | None:
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number >= 1 else None


def choose(requested: int | None = None) -> ThreadChoice:
    """The rule (module docstring) for this process: its environment, usable cores and load average."""
    return rule(requested, os.environ, usable_cores(), load_average())


def rule(requested: int | None, environ: Mapping[str, str], cores: int, load: float | None) -> ThreadChoice:
    """The rule in the module docstring, on given facts (``choose`` passes this process's)."""
    if requested is not None:
        return ThreadChoice(int(requested), "--threads")
    if (from_env := _positive(environ.get(ENV))) is not None:
        return ThreadChoice(from_env, f"{ENV}={from_env}; --threads overrides")
    busy = int(load + 0.5) if load is not None else 0
    free = cores - busy
    share = _positive(environ.get("LOCAL_WORLD_SIZE")) or 1
    threads = max(1, min(cores, free) // share)
    why = f"{cores} cores" + (f", load {load:.1f}: {max(free, 0)} free" if load is not None else ", load unknown")
    if share > 1:
        why += f", shared by {share} processes"
    if threads == 1 and free // share < 1:
        why += ", at least 1"
    return ThreadChoice(threads, why + "; --threads overrides")


def use(requested: int | None = None) -> ThreadChoice:
    """Choose (``choose``) and set torch's intra-op threads for this process; returns the choice to print and
    record."""
    import torch

    choice = choose(requested)
    torch.set_num_threads(choice.threads)
    return choice


_PENDING: list[str] = []  # the line of the last choice announced and not yet said


def announce(choice: ThreadChoice) -> None:
    """Have the next ``say_pending`` (the first progress note of this command's work) print the choice."""
    _PENDING[:] = [choice.line()]


def forget() -> None:
    """Drop an announcement never said (the command ended without work to do: a reused result, an error)."""
    _PENDING.clear()


def say_pending() -> None:
    """Print the announced choice on stderr, once."""
    while _PENDING:
        sys.stderr.write(_PENDING.pop() + "\n")
        sys.stderr.flush()
