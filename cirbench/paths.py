"""Where cirbench keeps its caches and its results, and the one upward search that finds a project's folders.

Caches: ``$CIRBENCH_CACHE``, else ``~/.cache/cirbench``. Results: see ``find_results_dir``. Cards
(``cards.find_card_dirs``) and results are found by the same rule, ``nearest_upward``, so a command run from a
subfolder of a project uses that project's cards and writes into (and reads from) that project's ``results/``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

RESULTS_ENV = "CIRBENCH_RESULTS"  # the configured results folder, used where no project results/ is found upward
DEFAULT_RESULTS = Path("results")  # the declared default of every --results-dir; it means "the results location"


def cache_root() -> Path:
    """The cache folder (features, shapes renders, LinCIR mask caches, corpora)."""
    return Path(os.environ.get("CIRBENCH_CACHE", Path.home() / ".cache" / "cirbench")).expanduser()


def nearest_upward(holds: Callable[[Path], bool], start: Path | None = None) -> Path | None:
    """The nearest folder, from ``start`` (the working directory) up to the filesystem root, for which ``holds``
    is true; None when there is none."""
    here = Path(start or Path.cwd()).resolve()
    return next((folder for folder in (here, *here.parents) if holds(folder)), None)


def holds_results(folder: Path) -> bool:
    """``folder/results/runs/`` is a folder: what cirbench writes into a results folder and reads back. A
    ``results/`` of another tool (no ``runs/``) or a Python package named ``results`` is not taken for one."""
    results = folder / DEFAULT_RESULTS
    return (results / "runs").is_dir() and not (results / "__init__.py").exists()


def find_results_dir(start: Path | None = None) -> Path:
    """The results location when ``--results-dir`` is not given: the ``results/`` of the nearest folder upward that
    holds one with ``runs/`` in it, else ``$CIRBENCH_RESULTS``, else ``./results`` (absolute). Why: a run made from a
    subfolder used to land in ``subfolder/results`` and was missing from the project's leaderboard."""
    found = nearest_upward(holds_results, start)
    if found is not None:
        return found / DEFAULT_RESULTS
    configured = os.environ.get(RESULTS_ENV)
    base = Path(start or Path.cwd())
    return (base / Path(configured).expanduser() if configured else base / DEFAULT_RESULTS).absolute()
