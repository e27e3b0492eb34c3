"""Rich consoles for cirbench's output: wrapped to the terminal, or not wrapped at all when written to a file.

Why: rich wraps at 80 columns whenever stdout is not a terminal (SLURM logs, ``> log``, pipes), which splits result
paths and error reasons in the middle. A file keeps every line whole; tables stay as wide as their content.
"""

from __future__ import annotations

import sys

from rich.console import Console

FILE_WIDTH = 4096  # a table's limit when the output is not a terminal (text itself is never wrapped there)
HELP_WIDTH = 160  # help panels span the whole width, so help in a file gets a generous but finite one


def is_terminal(stderr: bool = False) -> bool:
    """Whether stdout (``stderr``: stderr) is an interactive terminal."""
    stream = sys.stderr if stderr else sys.stdout
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def make_console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr) that wraps on a terminal and never hard-wraps in a file or pipe."""
    if is_terminal(stderr):
        return Console(stderr=stderr)
    return Console(stderr=stderr, soft_wrap=True, width=FILE_WIDTH)
