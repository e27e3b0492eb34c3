"""Exceptions that mean "the user must fix something"; the CLI prints them as one clear message."""

from __future__ import annotations

from cirbench.backbones import BackboneError
from cirbench.benchmarks.base import AnnotationError
from cirbench.commands import CLIError
from cirbench.methods.base import MethodError


class DataError(RuntimeError):
    """Missing or corrupt images, with counts, the first paths and the expected layout."""


class ResultError(RuntimeError):
    """A result or rankings file that cannot be used for what was asked (e.g. a val run for a test submission)."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    BackboneError,
    AnnotationError,
    CLIError,
    MethodError,
    DataError,
    ResultError,
    FileNotFoundError,
)
