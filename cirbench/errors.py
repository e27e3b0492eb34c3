"""Errors that mean "the user must fix something": the bottom layer, importing nothing from cirbench.

Every subclass of :class:`UserError` is printed by the CLI as one line (``error: ...``) with exit code 2, never as
a traceback. A message names the file or value at fault and says how to fix it. Some subclasses also derive from
``ValueError`` or ``KeyError`` where callers (and tests) treat them as such.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: a bad option, a missing file, a checkpoint that does not fit."""


class UsageError(UserError, ValueError):
    """Command-line flags that contradict each other or are missing."""


class OptionError(UserError, ValueError):
    """An unknown option, or a value of the wrong type or outside its allowed values."""


class UnknownNameError(UserError, KeyError):
    """An unknown benchmark, method or backbone name; the message suggests the closest registered names."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RegistryError(UserError, ValueError):
    """Two different objects registered under one name."""


class AnnotationError(UserError, ValueError):
    """A malformed or missing annotation file; the message names the file, the record and the fix."""


class DataError(UserError):
    """Missing or unreadable images, or a split that cannot be ranked (e.g. an unknown gallery)."""


class BackboneError(UserError, RuntimeError):
    """A backbone id that cannot be resolved, weights that are not available offline, or a guard that fired."""


class MethodError(UserError, RuntimeError):
    """A method that cannot be built: a missing or mismatched checkpoint, a prompt without its slot."""


class ResultError(UserError, ValueError):
    """A result or rankings file that cannot be used for what was asked (e.g. a val run for a test submission)."""


class ScoringError(UserError, ValueError):
    """A rankings file that cannot be scored against a split (unknown ids, missing queries, wrong format)."""


class SubmissionError(ResultError):
    """A run or a file the evaluation server would reject; the message lists every problem found."""


class LeaderboardError(UserError, ValueError):
    """Nothing to show, or an unreadable reported file."""


class CardError(UserError, ValueError):
    """A method or benchmark card that cannot be read."""


class TrainError(UserError, RuntimeError):
    """A training run that cannot start or continue (bad config, corpus too small, incompatible resume)."""


class CorpusError(UserError, RuntimeError):
    """A caption corpus that cannot be read, or one that would need a download that was not allowed."""


class MaskingError(UserError, RuntimeError):
    """The spaCy pipeline for Self-Masking Projection cannot be loaded, or a masking mode is unknown."""


class DistributedError(UserError, RuntimeError):
    """A ``torchrun`` evaluation whose ranks disagree: an image or query encoded twice or not at all, or an
    environment that is not a complete torchrun one."""


class SearchIndexError(UserError, ValueError):
    """An unknown ``--index``, a bad index parameter, faiss not installed, or a run the chosen index cannot rank."""


class IntegrityError(UserError, ValueError):
    """A file cirbench wrote earlier whose digest no longer matches: damaged, truncated or edited since."""


class NonFiniteError(UserError, ValueError):
    """A NaN or infinite value in weights, features, scores, a loss or parameters; names the component and file."""


class ContainmentError(UserError, ValueError):
    """A path that resolves (symlinks followed) outside the root it must stay in."""


class BusyError(UserError, RuntimeError):
    """Another process is writing the same run folder or result; a second writer is refused."""


class LimitError(UserError, ValueError):
    """An input that would make cirbench work or allocate without bound (an alias bomb, an image over the pixel
    budget)."""


SHOWN_CHARS = 80


def shown(value: object, limit: int = SHOWN_CHARS, _depth: int = 0) -> str:
    """A value as an error message may print it: ``repr`` cut to ``limit`` characters, whatever its size.

    Why: an error must stay one short line even for a huge value (a YAML alias bomb expands to gigabytes), so the
    value is never fully rendered: containers are summarised by type and length before any ``repr`` is taken.
    """
    if isinstance(value, (list, tuple, dict, set, frozenset)) and (len(value) > 8 or _depth >= 2):
        return f"<{type(value).__name__} of {len(value)} items>"
    if isinstance(value, (str, bytes)) and len(value) > 4 * limit:
        value = value[: 4 * limit]
    try:
        text = (
            repr(value)
            if not isinstance(value, (list, tuple, dict, set, frozenset))
            else _shallow(value, limit, _depth)
        )
    except Exception:  # noqa: BLE001 - a value whose repr fails is still named by its type
        text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shallow(value: object, limit: int, depth: int) -> str:
    """A container's repr built from bounded item reprs (a nested alias bomb never expands)."""
    if isinstance(value, dict):
        inner = ", ".join(
            f"{shown(k, limit, depth + 1)}: {shown(v, limit, depth + 1)}" for k, v in list(value.items())[:8]
        )
        return "{" + inner + "}"
    items = ", ".join(shown(v, limit, depth + 1) for v in list(value)[:8])  # type: ignore[call-overload]
    return f"[{items}]" if isinstance(value, list) else f"({items})"
