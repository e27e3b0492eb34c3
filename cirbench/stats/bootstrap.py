"""Bootstrap intervals and paired tests over queries (or clusters of dependent queries), vectorised and exact.

Resampling draws units with replacement *within each stratum* (FashionIQ category, GeneCIS task, shapes style;
one stratum otherwise), so every resample keeps each part's number of units, as the benchmark's averages assume. A
unit is a query, or a whole cluster of dependent queries when the benchmark declares them (``stats/clusters.py``;
``cluster=False`` is the query-level bootstrap, bit for bit). Every metric of a resample is a ratio of weighted sums
of per-unit values, so only *how many* draws land on each distinct row of values matters: units whose rows are
identical (most hit vectors take a handful of patterns) form one cell, and a stratum with few cells is resampled
with one multinomial draw over its cells, which has exactly the distribution of drawing its units one by one.
Strata with many distinct rows (AP values) draw unit indices and count them with ``bincount``. The metrics of a
block of resamples are then one matrix product.

Intervals are percentile intervals of the resampled metric, except where the sample is small or the hits rare
(``stats/small.py``: Agresti-Coull at the effective sample size). Paired comparisons resample the same units for
both runs; the sign-flip test is ``stats/flips.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from cirbench.query_scores import QueryScores
from cirbench.stats.clusters import aggregate, design_effect, units
from cirbench.stats.flips import BLOCK, CELL_DRAW_COST, FlipTest, flip_test, permutation_p, weights
from cirbench.stats.small import small_interval

__all__ = ["FlipTest", "flip_test", "permutation_p", "weights"]  # the sign-flip test, imported from here too


@dataclass
class Cells:
    """The distinct per-query rows of a matrix within each stratum."""

    rows: np.ndarray  # cells x columns
    stratum: np.ndarray  # each cell's stratum (index into ``strata``)
    sizes: np.ndarray  # queries per cell
    query_cell: np.ndarray  # each query's cell
    strata: list[str]


def cells(matrix: np.ndarray, strata: Sequence[str]) -> Cells:
    """Group identical rows of ``matrix`` (queries x columns, no NaN) within each stratum."""
    names = list(dict.fromkeys(strata))
    stratum_of = np.array([names.index(s) for s in strata]) if len(strata) else np.zeros(0, dtype=int)
    keyed = np.column_stack([stratum_of.astype(np.float64), matrix])
    unique, query_cell, sizes = np.unique(keyed, axis=0, return_inverse=True, return_counts=True)
    return Cells(unique[:, 1:], unique[:, 0].astype(int), sizes, query_cell.reshape(-1), names)


def cell_counts(found: Cells, resamples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Blocks of (resamples x cells) counts: how many of each stratum's draws (with replacement, as many as the
    stratum has queries) land in each of its cells."""
    plans = []
    query_stratum = found.stratum[found.query_cell]
    for s in range(len(found.strata)):
        cell_ids = np.flatnonzero(found.stratum == s)  # contiguous: np.unique sorts rows by stratum first
        sizes = found.sizes[cell_ids]
        local = np.searchsorted(cell_ids, found.query_cell[query_stratum == s]).astype(np.int64)  # query -> cell
        columns = slice(int(cell_ids[0]), int(cell_ids[-1]) + 1) if len(cell_ids) else slice(0, 0)
        plans.append((columns, len(cell_ids), sizes, len(local), len(cell_ids) * CELL_DRAW_COST <= len(local), local))
    buffer = np.empty((min(BLOCK, resamples), len(found.sizes)))
    for start in range(0, resamples, BLOCK):
        size = min(BLOCK, resamples - start)
        counts = buffer[:size]  # every column is written below: each cell belongs to one stratum
        for columns, width, sizes, n, few, local in plans:
            if few:
                counts[:, columns] = rng.multinomial(n, sizes / n, size=size)
                continue
            drawn = rng.integers(0, n, size=(size, n))  # int64: what bincount counts without a copy
            if width < n:  # several queries share a cell (all distinct: the draw is the cell already)
                drawn = local[drawn]
            drawn += (np.arange(size) * width)[:, None]
            counts[:, columns] = np.bincount(drawn.ravel(), minlength=size * width).reshape(size, width)
        yield counts


def resample_counts(strata: Sequence[str], resamples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Blocks of (resamples x queries) counts: how often each query is drawn, drawn within its stratum."""
    found = cells(np.arange(len(strata), dtype=np.float64)[:, None], strata)  # one cell per query
    for counts in cell_counts(found, resamples, rng):
        yield counts[:, found.query_cell]


def _matrix(scores: QueryScores, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(values with NaN as 0, covered flags), queries x metrics, for the metrics with per-query values."""
    values = np.column_stack([scores.values[m] for m in names]) if names else np.zeros((len(scores.query_ids), 0))
    covered = ~np.isnan(values)
    return np.where(covered, values, 0.0), covered.astype(np.float64)


def _direct(scores: QueryScores) -> list[str]:
    return [m for m, rule in scores.rules.items() if rule.kind != "mean_of"]


def resampled(
    runs: Sequence[QueryScores], resamples: int, seed: int, cluster: bool = True
) -> list[dict[str, np.ndarray]]:
    """Every metric of every run for each resample, the same units (queries, or clusters of the first run's
    declaration when ``cluster``) drawn for all runs."""
    blocks = [_matrix(run, _direct(run)) for run in runs]
    matrix = np.column_stack([part for values, covered in blocks for part in (values, covered)])
    strata: Sequence[str] = runs[0].strata
    grouped = units(runs[0], cluster)
    if grouped is not None:  # a unit's row: its queries' summed values and covered counts
        matrix, strata = aggregate(matrix, grouped), grouped.strata
    found = cells(matrix, strata)
    totals: list[np.ndarray] = []
    for counts in cell_counts(found, resamples, np.random.default_rng(seed)):
        totals.append(counts @ found.rows)
    summed = np.concatenate(totals) if totals else np.zeros((0, matrix.shape[1]))
    out, column = [], 0
    for run, (values, _) in zip(runs, blocks, strict=True):
        width = values.shape[1]
        sums, sizes = summed[:, column : column + width], summed[:, column + width : column + 2 * width]
        column += 2 * width
        with np.errstate(invalid="ignore", divide="ignore"):  # a metric of few queries may draw none: NaN
            metrics = {m: 100.0 * sums[:, j] / sizes[:, j] for j, m in enumerate(_direct(run))}
        for m, rule in run.rules.items():
            if rule.kind == "mean_of":
                metrics[m] = _mean_of(run, m, metrics)
        out.append(metrics)
    return out


def _mean_of(run: QueryScores, metric: str, metrics: dict[str, np.ndarray]) -> np.ndarray:
    rule = run.rules[metric]
    parts = [metrics[o] if o in metrics else _mean_of(run, o, metrics) for o in rule.of]
    return np.mean(parts, axis=0)


@dataclass
class Interval:
    value: float
    low: float
    high: float
    method: str = "percentile"  # or "agresti-coull" (a small part or rare hits: stats/small.py)
    design_effect: float = 1.0  # cluster-level over query-level variance (1: no clusters)

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def intervals(
    scores: QueryScores,
    official: dict[str, float],
    resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
    cluster: bool = True,
) -> dict[str, Interval]:
    """The interval of every metric (the point value is the official one): percentile bootstrap, or Agresti-Coull
    where the sample is small or the hits rare. ``cluster``: resample the clusters ``scores`` carries (the
    benchmark's declaration); False: queries (``--cluster none``)."""
    (draws,) = resampled([scores], resamples, seed, cluster)
    grouped = units(scores, cluster)
    tail = 100 * (1 - level) / 2
    out = {}
    for m in scores.rules:
        effect = design_effect(scores, m, grouped)
        small = small_interval(scores, m, official[m], grouped, level)
        if small is not None:
            out[m] = Interval(official[m], small[0], small[1], "agresti-coull", effect)
            continue
        low, high = np.nanpercentile(draws[m], [tail, 100 - tail])
        out[m] = Interval(official[m], float(low), float(high), "percentile", effect)
    return out


def paired(
    a: QueryScores, b: QueryScores, resamples: int = 10_000, seed: int = 0, level: float = 0.95, cluster: bool = True
) -> dict[str, Interval]:
    """Percentile interval of the difference a - b of every metric, the same units resampled for both runs; its
    design effect is that of the per-query differences."""
    ra, rb = resampled([a, b], resamples, seed, cluster)
    diff = difference(a, b)
    grouped = units(diff, cluster)
    tail = 100 * (1 - level) / 2
    out = {}
    for m in a.rules:
        low, high = np.nanpercentile(ra[m] - rb[m], [tail, 100 - tail])
        out[m] = Interval(float("nan"), float(low), float(high), "percentile", design_effect(diff, m, grouped))
    return out


def difference(a: QueryScores, b: QueryScores) -> QueryScores:
    """Per-query differences a - b (same queries, same order, same metrics)."""
    out = QueryScores(list(a.query_ids), list(a.strata), rules=dict(a.rules), clusters=a.clusters)
    out.values = {m: a.values[m] - b.values[m] for m in a.values}
    return out


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of several p-values (controls the family-wise error rate)."""
    order = sorted(p_values, key=p_values.get)
    m, running, out = len(order), 0.0, {}
    for i, name in enumerate(order):
        running = max(running, min(1.0, (m - i) * p_values[name]))
        out[name] = running
    return out
