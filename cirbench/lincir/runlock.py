"""One writer at a time for a training run folder: ``train lincir --out DIR`` holds ``DIR/.writer.lock`` for the
whole run, so a second run into the same folder (new, ``--resume`` or ``--overwrite``) is refused in one line and
never interleaves its checkpoints with the first's.

Under torchrun only rank 0 holds the lock; every rank learns whether it got it, so all of them stop together. The
thread that holds a folder's lock may take it again (a ``Trainer`` built again after one that failed to start);
``trainer.train`` gives it back when the run returns or fails.
The lock is an OS file lock (``filelock``): a process killed with ``kill -9`` releases it, so a killed run can be
resumed at once.
"""

from __future__ import annotations

import threading
from pathlib import Path

from filelock import FileLock, Timeout

from cirbench.errors import BusyError
from cirbench.lincir.distributed import broadcast
from cirbench.torchrun import Dist

LOCK_FILE = ".writer.lock"
_HELD: dict[Path, tuple[FileLock, int]] = {}


def _key(out: Path) -> Path:
    return Path(out).expanduser().resolve()


def acquire(out: Path, dist: Dist) -> None:
    """Take the run folder's writer lock on rank 0 (all ranks raise ``BusyError`` when another process holds it)."""
    problem = None
    held = _HELD.get(_key(out))
    if dist.main and not (held and held[1] == threading.get_ident()):  # this thread has it: a Trainer built again
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        lock = FileLock(out / LOCK_FILE, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            problem = (
                f"{out} is being written by another training process (it holds {out / LOCK_FILE}): wait for that "
                "run to finish or stop it, or train into another --out; two writers would interleave checkpoints"
            )
        else:
            _HELD[_key(out)] = (lock, threading.get_ident())
    problem = broadcast(dist, problem)
    if problem:
        raise BusyError(problem)


def release(out: Path) -> None:
    """Give the lock back (a no-op where this thread does not hold it, e.g. after a refused second writer)."""
    held = _HELD.get(_key(out))
    if held is not None and held[1] == threading.get_ident():
        del _HELD[_key(out)]
        held[0].release()
