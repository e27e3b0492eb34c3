"""Published rows (``reported.yaml``) checked before they become leaderboard rows: one place, every field.

Why: the rows are typed by hand from papers. A block with one value that is not a number (``R@1: abc``) was left
out whole without a word, ``.nan`` and ``250`` were shown as numbers, a misspelt benchmark (``cirrr``) made a table
of its own, a metric no benchmark has (``R@7``) vanished, and the same row typed twice was shown twice. Each is now
one line naming the file, the row and the field, like every other configuration surface (docs/RELIABILITY.md, 7).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cirbench.benchmarks import BENCHMARKS
from cirbench.benchmarks.base import Benchmark
from cirbench.errors import LeaderboardError, UserError, shown
from cirbench.options import did_you_mean

# Row fields that are not benchmark blocks: any other key holding a mapping must name a benchmark.
NOT_BLOCKS = frozenset({"split"})


def _refuse(path: Path, index: int, problem: str) -> LeaderboardError:
    return LeaderboardError(f"{path}: row {index}: {problem}; fix the row (published numbers are percentages)")


def check_row(path: Path, index: int, row: Any) -> dict[str, Benchmark]:
    """Validate one row; returns its benchmark blocks (name -> benchmark). Raises ``LeaderboardError``."""
    if not isinstance(row, dict):
        raise _refuse(path, index, f"a row is a mapping (method, backbone, benchmark blocks), not {shown(row)}")
    for name in ("method", "backbone"):
        value = row.get(name)
        if not isinstance(value, str) or not value.strip():
            raise _refuse(path, index, f"{name!r} must be a non-empty string, not {shown(value)}")
    if row.get("variant") is not None and not isinstance(row["variant"], str):
        raise _refuse(path, index, f"'variant' must be a string, not {shown(row['variant'])}")
    blocks: dict[str, Benchmark] = {}
    for key, value in row.items():
        if key in NOT_BLOCKS:
            continue
        known = key in BENCHMARKS
        if not known and not isinstance(value, dict):
            continue  # a text field (source, training_data, train_time, ..._source)
        if not known:
            names = list(BENCHMARKS)
            raise _refuse(
                path,
                index,
                f"{shown(key)} is no benchmark{did_you_mean(key, names)} (known: {', '.join(names)})",
            )
        if not isinstance(value, dict) or not value:
            raise _refuse(
                path, index, f"{key}: give its metrics as a mapping such as {{R@1: 25.0}}, not {shown(value)}"
            )
        bench = BENCHMARKS.get(key)
        _check_metrics(path, index, bench, value)
        _check_split(path, index, bench, row.get("split"))
        blocks[key] = bench
    return blocks


def _check_metrics(path: Path, index: int, bench: Benchmark, metrics: Mapping[Any, Any]) -> None:
    for metric, value in metrics.items():
        if metric not in bench.metric_names:
            hint = did_you_mean(metric, bench.metric_names)
            raise _refuse(
                path,
                index,
                f"{bench.name} has no metric {shown(metric)}{hint} (its metrics: {', '.join(bench.metric_names)})",
            )
        if value is None:
            continue  # not reported
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _refuse(path, index, f"{bench.name} {metric} must be a number, not {shown(value)}")
        if not math.isfinite(value) or not 0 <= value <= 100:
            raise _refuse(path, index, f"{bench.name} {metric} = {shown(value)} is not a percentage in [0, 100]")


def _check_split(path: Path, index: int, bench: Benchmark, split: Any) -> None:
    if isinstance(split, dict):
        split = split.get(bench.name)
    if split is None:
        return
    if not isinstance(split, str):
        raise _refuse(path, index, f"split must be a name or a mapping of benchmark -> name, not {shown(split)}")
    try:
        bench.resolve_split(split)
    except UserError as error:
        raise _refuse(path, index, f"split: {error}") from None


def refuse_duplicates(path: Path, keys: list[tuple[int, tuple[str, ...]]]) -> None:
    """The same (benchmark, split, method, variant, backbone) in two rows would be shown twice: refused."""
    first: dict[tuple[str, ...], int] = {}
    for index, key in keys:
        if key in first:
            bench, split, method, variant, backbone = key
            what = f"{method}{f' ({variant})' if variant else ''} with {backbone} on {bench} {split}"
            raise LeaderboardError(
                f"{path}: rows {first[key]} and {index} both give {what}: keep one row (or set 'variant' to tell "
                "them apart)"
            )
        first[key] = index
