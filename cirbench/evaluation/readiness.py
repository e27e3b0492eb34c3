"""Is a benchmark split ready to evaluate here? One answer for ``data check``, ``eval --all`` and ``eval``.

Ready means: its annotation files load with the given options, its benchmark raises no blocker (CIRCO needs its
gallery list to rank), and its images are on disk (each split's images are checked once).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cirbench.benchmarks import get_benchmark
from cirbench.benchmarks.base import BenchmarkSplit
from cirbench.errors import AnnotationError
from cirbench.evaluation.evaluator import load_split


def why_not_ready(
    benchmark: str, split: str | None, root: Path | None, options: Mapping[str, Any], skip_missing: bool = False
) -> str | None:
    """Why a split cannot be evaluated here (None when it can); bad options are raised, not reported."""
    bench = get_benchmark(benchmark)
    resolved, parsed = bench.resolve_split(split), bench.parse_options(options)
    try:
        data = load_split(bench, resolved, root, parsed)
    except AnnotationError as error:
        return f"data not found ({' '.join(str(error).split())})"
    if data.blockers:
        return "; ".join(data.blockers)
    check = data.image_check
    if check.bad and not skip_missing:
        return f"{check.summary(limit=1)} under {root} (run `cirbench data check`)"
    return None


def known_gallery_size(data: BenchmarkSplit) -> int | None:
    """Images ranked against, or None where that is not one known number: a part whose gallery the data does not
    list (CIRCO without its image list: it is not 0) or queries that each bring their own candidates (GeneCIS)."""
    used = [part for part in data.parts if part.queries]
    if not used or any(not part.gallery for part in used):
        return None
    return data.gallery_size


def data_report(
    benchmark: str,
    root: Path | None,
    split: str | None,
    options: Mapping[str, Any],
    deep: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Counts and every problem found for a benchmark split on disk (``cirbench data check``): every image is opened
    (its header read; ``deep``: fully decoded, which finds truncated files)."""
    bench = get_benchmark(benchmark)
    resolved = bench.resolve_split(split)
    parsed = bench.parse_options(options)
    report: dict[str, Any] = {
        "benchmark": bench.name,
        "split": resolved,
        "root": str(root) if root else None,
        "layout": "",
        "n_queries": 0,
        "gallery_size": None,
        "n_images": 0,
        "n_missing": 0,
        "n_unreadable": 0,
        "missing_first": [],
        "unreadable_first": [],
        "check": "deep" if deep else "header",
        "problems": [],
    }
    try:
        data = load_split(bench, resolved, root, parsed)
    except AnnotationError as error:
        report["problems"].append(str(error))
        report["ok"] = False
        return report
    check = data.check_images("deep" if deep else "header", progress)
    report.update(
        layout=data.layout,
        n_queries=len(data.queries),
        gallery_size=known_gallery_size(data),
        n_images=len(data.images),
        n_missing=len(check.missing),
        n_unreadable=len(check.unreadable),
        missing_first=[str(ref.path) for ref in check.missing[:10]],
        unreadable_first=[f"{ref.path}: {why}" for ref, why in check.unreadable[:10]],
        parts={part.name or "all": len(part.queries) for part in data.parts},
    )
    if check.bad:
        report["problems"].append(check.summary(limit=10))
    report["problems"].extend(data.blockers)
    report["problems"].extend(data.warnings)
    report["ok"] = not report["problems"]
    return report
