"""Intervals for small parts and rare hits, where the percentile bootstrap under-covers.

A percentile interval of a rate with few hits (50 queries at a 5 % hit rate: 2.5 expected) covers 91 % instead of
95 %: with no hit at all (7.7 % of such samples) every resample is 0 and the interval is [0, 0]. Where the sample
holds fewer than ``SMALL_COUNT`` (effective) successes or failures, the interval is Agresti-Coull's (Wilson's
centre, z^2/2 pseudo-successes and failures added), computed at the *effective* sample size

    n_eff = p (1 - p) / V

with V the linearised variance of the metric (``clusters.linear_variance``: stratified, over clusters when the
benchmark declares them). For hit vectors over independent queries n_eff is exactly the number of queries (the
textbook interval); clusters shrink it by the design effect. A mean of values in [0, 1] (an AP) has a variance of at
most p (1 - p), so n_eff is capped at the number of queries: the interval is then the Bernoulli worst case, which
covers. A metric whose values are all 0 (or all 1) has V = 0 and takes the number of covered clusters as n_eff.
Elsewhere the percentile interval stays (it covers there: docs/STATISTICS.md has the figures).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from cirbench.query_scores import QueryScores
from cirbench.stats.clusters import Units, covered_queries, covered_units, linear_variance

SMALL_COUNT = 10  # fewer effective successes or failures than this: Agresti-Coull instead of the percentile


def agresti_coull(p: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Agresti-Coull interval of a proportion ``p`` observed on ``n`` (effective) trials, clipped to [0, 1]."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    n_tilde = n + z * z
    centre = (n * p + z * z / 2) / n_tilde
    half = z * math.sqrt(centre * (1 - centre) / n_tilde)
    return max(0.0, centre - half), min(1.0, centre + half)


def effective_n(p: float, variance: float, queries: float, clusters: float) -> float:
    """The sample size of a binomial with this proportion and variance (see the module docstring)."""
    if p <= 0 or p >= 1:
        return clusters
    if variance <= 0:
        return queries
    return min(queries, p * (1 - p) / variance)


def _unit_interval(scores: QueryScores, metric: str) -> bool:
    """Whether every value the metric rests on lies in [0, 1] (hits, APs, soft scores)."""
    rule = scores.rules[metric]
    if rule.kind == "mean_of":
        return all(_unit_interval(scores, o) for o in rule.of)
    values = scores.values[metric]
    values = values[~np.isnan(values)]
    return bool(len(values)) and bool(np.all((values >= 0) & (values <= 1)))


def small_interval(
    scores: QueryScores, metric: str, value: float, found: Units | None, level: float = 0.95
) -> tuple[float, float] | None:
    """The Agresti-Coull interval (percent) of ``metric`` when its sample is small or its hits rare, else None."""
    if not _unit_interval(scores, metric):
        return None
    p = min(max(value / 100.0, 0.0), 1.0)
    n = effective_n(
        p, linear_variance(scores, metric, found), covered_queries(scores, metric), covered_units(scores, metric, found)
    )
    if n <= 0 or min(p, 1 - p) * n >= SMALL_COUNT:
        return None
    low, high = agresti_coull(p, n, level)
    return 100.0 * low, 100.0 * high
