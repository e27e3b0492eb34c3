"""Clusters of dependent queries: the units that are resampled and sign-flipped whole, and the design effect.

A benchmark declares which queries depend on each other (``Benchmark.query_clusters``: CIRR's image set, a
reference image several queries share). A cluster never crosses a part: the unit is (part, cluster), so a
stratified resample still draws each part on its own, and an average over parts (FashionIQ's ``avg_R@10``) averages
parts whose units are disjoint. With no declaration, or ``cluster=False`` (``--cluster none``), every query is its
own unit and every number is the query-level one, bit for bit.

The *linearised* variance of a metric is the variance its bootstrap converges to: a ratio ``R = sum y / sum x``
over the covered queries has the influence ``z_u = (y_u - R x_u) / X`` per unit, an average of parts the average of
the parts' influences, and drawing ``n_h`` units with replacement in each stratum *h* gives
``V = sum_h n_h * var_h(z)`` (population variance within the stratum). The design effect is ``V`` over units
(clusters) divided by ``V`` over queries: how much the dependence inflates the variance of the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cirbench.query_scores import QueryScores


@dataclass(frozen=True)
class Units:
    """Each query's unit (cluster within its part) and each unit's part."""

    index: np.ndarray  # query -> unit
    strata: list[str]  # unit -> its part

    @property
    def count(self) -> int:
        return len(self.strata)


def units(scores: QueryScores, cluster: bool = True) -> Units | None:
    """The clusters of ``scores`` as units nested in its parts; None when each query is its own unit (no clusters
    declared, ``cluster=False``, or every cluster a single query)."""
    if not cluster or scores.clusters is None:
        return None
    keys: dict[tuple[str, str], int] = {}
    index = np.array([keys.setdefault((s, c), len(keys)) for s, c in zip(scores.strata, scores.clusters, strict=True)])
    if len(keys) == len(scores.query_ids):
        return None
    return Units(index.astype(np.int64), [s for s, _ in keys])


def aggregate(matrix: np.ndarray, found: Units) -> np.ndarray:
    """Per-unit sums of the rows of ``matrix`` (queries x columns)."""
    out = np.zeros((found.count, matrix.shape[1]))
    np.add.at(out, found.index, matrix)
    return out


def influence(scores: QueryScores, metric: str) -> np.ndarray:
    """Per-query influence of ``metric`` on the 0-1 scale (summed within a unit, the unit's influence)."""
    rule = scores.rules[metric]
    if rule.kind == "mean_of":
        return np.mean([influence(scores, o) for o in rule.of], axis=0)
    values = scores.values[metric]
    covered = ~np.isnan(values)
    total = max(int(covered.sum()), 1)
    v = np.where(covered, values, 0.0)
    ratio = float(v.sum()) / total
    return np.where(covered, v - ratio, 0.0) / total


def linear_variance(scores: QueryScores, metric: str, found: Units | None) -> float:
    """The stratified bootstrap's variance of ``metric`` (0-1 scale) to first order, over units or queries."""
    z = influence(scores, metric)
    strata = scores.strata
    if found is not None:
        z, strata = np.bincount(found.index, weights=z, minlength=found.count), found.strata
    labels = np.asarray(strata)
    total = 0.0
    for part in dict.fromkeys(strata):
        inside = z[labels == part]
        total += len(inside) * float(np.var(inside))
    return total


def design_effect(scores: QueryScores, metric: str, found: Units | None) -> float:
    """Cluster-level over query-level variance of ``metric`` (1 without clusters; NaN when both are 0)."""
    if found is None:
        return 1.0
    query_level = linear_variance(scores, metric, None)
    if query_level <= 0:
        return float("nan")
    return linear_variance(scores, metric, found) / query_level


def covered_units(scores: QueryScores, metric: str, found: Units | None) -> float:
    """How many units a metric covers (an average of parts: the harmonic size ``P^2 / sum 1/n_j`` that gives its
    variance): the sample size of a metric whose values are all 0 or all 1."""
    rule = scores.rules[metric]
    if rule.kind == "mean_of":
        sizes = [covered_units(scores, o, found) for o in rule.of]
        return len(sizes) ** 2 / sum(1 / max(s, 1.0) for s in sizes)
    covered = ~np.isnan(scores.values[metric])
    if found is None:
        return float(covered.sum())
    return float(len(np.unique(found.index[covered])))


def covered_queries(scores: QueryScores, metric: str) -> float:
    """Queries a metric covers (harmonic size for an average of parts)."""
    return covered_units(scores, metric, None)
