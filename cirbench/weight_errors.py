"""One error boundary for loading weights: whatever torch, open_clip or safetensors raise while reading a backbone or
a method checkpoint (an ``AssertionError`` for a file of another width, a ``RuntimeError`` for mismatched shapes, a
``BadZipFile`` or ``UnpicklingError`` for a file that is no checkpoint) becomes one ``UserError`` line naming the
file, what was expected and the fix.

Why: those libraries speak about tensors and zip records, not about which file the user passed or which model it
should fit, and their exceptions reach the user as tracebacks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from cirbench.errors import UserError

DETAIL_CHARS = 300  # torch lists every mismatched tensor; the first ones say enough, the line stays short
LOAD_FIX = "the file is truncated, not a checkpoint, or made for another model: check the path or download it again"


def detail(error: BaseException) -> str:
    """The library's reason on one line, cut to ``DETAIL_CHARS``."""
    if "Weights only load failed" in str(error) and error.__context__ is not None:
        error = error.__context__  # torch's own advice (load with weights_only=False) is not one to print
    text = " ".join(str(error).split()) or "no message"
    text = text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."
    return f"{type(error).__name__}: {text}"


@contextlib.contextmanager
def library_errors(
    error_type: type[UserError],
    what: str,
    path: object,
    expected: str = "",
    fix: str = LOAD_FIX,
    verb: str = "load",
) -> Iterator[None]:
    """Inside the block, any exception that is not already a ``UserError`` becomes ``error_type`` with the message
    ``cannot VERB WHAT from PATH (reason); expected EXPECTED; FIX``."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - every library failure while loading is the user's file
        wanted = f"; expected {expected}" if expected else ""
        raise error_type(f"cannot {verb} {what} from {path} ({detail(error)}){wanted}; {fix}") from error
