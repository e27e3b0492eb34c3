"""Output files named on the command line, checked before any work: one preflight every tool command uses.

Why: ``inspect --csv X --json X`` wrote one file over the other, ``leaderboard --chart c.txt`` wrote a PNG under a
text name, and ``sensitivity --out`` or ``demo --leaderboard`` into a folder failed only after the evaluations or the
training. Each output is now checked first: a file path (not a folder, nothing but folders above it), distinct from
the command's other outputs, with the suffix its format needs, under a folder this process may write. The write
itself still goes through ``cirbench.io.atomic_write`` (no space left is found there, naming the file).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from pathlib import Path

from cirbench.errors import UsageError, shown


def check_outputs(outputs: Mapping[str, Path | None], suffixes: Mapping[str, str] | None = None) -> None:
    """``outputs``: flag -> path (None: not given). ``suffixes``: flag -> the suffix its format needs (``.png``).
    Raises ``UsageError`` (two outputs on one file, a wrong suffix), or the ``OSError`` the write would raise (a
    folder there, a file above it, a read-only folder) naming the file."""
    seen: dict[Path, str] = {}
    for flag, path in outputs.items():
        if path is None:
            continue
        path = Path(path)
        text = shown(str(path))
        if not path.name or path.is_dir():  # the line the write would end with, before the work instead of after
            raise _cannot_write(path, errno.EISDIR)
        wanted = (suffixes or {}).get(flag)
        if wanted and path.suffix.lower() != wanted:
            raise UsageError(
                f"{flag} {text}: that file is written as {wanted[1:].upper()}; give a path ending {wanted}"
            )
        same = seen.get(path.resolve())
        if same is not None:
            raise UsageError(f"{same} and {flag} name the same file {text}: give each output its own path")
        seen[path.resolve()] = flag
        _check_parent(path)


def _check_parent(path: Path) -> None:
    """The nearest existing folder above ``path`` is a folder (not a file) and may be written."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise _cannot_write(path, errno.ENOTDIR)
    if not os.access(parent, os.W_OK):
        from cirbench.io import ensure_writable

        try:
            ensure_writable(parent)  # the errno that says why (read-only, permission)
        except OSError as error:
            raise _cannot_write(path, error.errno) from None


def _cannot_write(path: Path, code: int | None) -> OSError:
    """The ``OSError`` the write itself would raise, naming the file asked for: the CLI boundary turns it into its
    one line (``cannot write PATH: Is a directory (EISDIR); ...``), the same whenever it is found."""
    error = OSError(code, os.strerror(code) if code is not None else "cannot write", str(path))
    error.cirbench_operation = "write"  # type: ignore[attr-defined]
    return error
