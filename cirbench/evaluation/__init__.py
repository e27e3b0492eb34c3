"""Evaluation: a typed run spec (``spec``), the missing-images policy (``prepare``), the computation (``engine``),
the one entry point that reuses or writes results (``evaluate``) and the card suite of ``eval --all`` (``suite``)."""

from cirbench.evaluation.evaluator import EvalSettings, Outcome, evaluate, keep_splits
from cirbench.evaluation.spec import RunRequest, RunSpec, resolve

__all__ = ["EvalSettings", "Outcome", "RunRequest", "RunSpec", "evaluate", "keep_splits", "resolve"]
