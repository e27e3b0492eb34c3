"""The paired sign-flip permutation test, over queries or whole clusters, with a memory cap on exact enumeration.

Under the null hypothesis that the two runs are exchangeable on each unit (a query, or a cluster of dependent
queries), the sign of each unit's difference is a fair coin. The statistic ``T(s) = sum_u s_u * w_u`` (``w_u``: the
unit's summed weighted differences, so that ``T(1)`` is the metric's difference) is linear in the signs, and
``p = P(|T(s)| >= |T(1)|)``. With m non-zero units and ``2^m`` at most the permutations asked for, every flip is
enumerated (exact), at most ``2^HELD_BITS`` held at once and at most ``2^EXACT_BITS`` in all; beyond that cap, or
beyond the permutations asked for, ``p = (hits + 1) / (B + 1)`` over B random flips, units of equal weight flipped
together as a binomial count (the same distribution). ``FlipTest.method`` says which was done.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from cirbench.query_scores import QueryScores
from cirbench.stats.clusters import units

BLOCK = 1000
CELL_DRAW_COST = 16  # a multinomial cell costs about as much as this many uniform draws and counts
HELD_BITS = 16  # at most 2^16 sign patterns in memory at once
EXACT_BITS = 20  # exact enumeration up to 2^20 flips (streamed); sampled beyond, and said so


@dataclass(frozen=True)
class FlipTest:
    p: float
    exact: bool
    flips: int  # enumerated, or sampled
    units: int  # non-zero differences flipped (queries or clusters)
    capped: bool = False  # enumeration was within --resamples but over 2^EXACT_BITS: sampled instead
    clustered: bool = False

    @property
    def method(self) -> str:
        unit = "clusters" if self.clustered else "queries"
        if self.exact:
            return f"exact ({self.flips:,} flips of {self.units} {unit})"
        capped = f"; exact enumeration capped at 2^{EXACT_BITS}" if self.capped else ""
        return f"sampled ({self.flips:,} random flips of {self.units} {unit}{capped})"


def weights(scores: QueryScores, metric: str) -> np.ndarray:
    """Per-query weights w such that the metric of values v is sum(w * v) (for ``rate`` and ``mean`` rules, and
    means of them): the sign-flip statistic is then linear in the signs."""
    rule = scores.rules[metric]
    if rule.kind == "mean_of":
        return np.mean([weights(scores, o) for o in rule.of], axis=0)
    values = scores.values[metric]
    covered = ~np.isnan(values)
    return np.where(covered, values, 0.0) * (100.0 / max(int(covered.sum()), 1))


def flip_test(
    diff: QueryScores, metric: str, permutations: int = 10_000, seed: int = 0, cluster: bool = True
) -> FlipTest:
    """Two-sided sign-flip test of the metric of per-query differences ``diff`` (whole clusters flipped when
    ``diff`` carries them and ``cluster``)."""
    w = weights(diff, metric)
    found = units(diff, cluster)
    if found is not None:
        w = np.bincount(found.index, weights=w, minlength=found.count)
    w = w[w != 0]
    clustered = found is not None
    if not len(w):
        return FlipTest(1.0, True, 1, 0, clustered=clustered)
    observed = abs(float(w.sum()))
    tolerance = 1e-9 * float(np.abs(w).sum())
    m = len(w)
    if 2**m <= permutations and m <= HELD_BITS:
        flips = np.array(list(itertools.product((1.0, -1.0), repeat=m)))
        return FlipTest(float(np.mean(np.abs(flips @ w) >= observed - tolerance)), True, 2**m, m, clustered=clustered)
    if 2**m <= permutations and m <= EXACT_BITS:
        return FlipTest(_streamed(w, observed - tolerance) / 2**m, True, 2**m, m, clustered=clustered)
    hits = _sampled(w, observed - tolerance, permutations, seed)
    capped = 2**m <= permutations
    return FlipTest((hits + 1) / (permutations + 1), False, permutations, m, capped, clustered)


def _streamed(w: np.ndarray, threshold: float) -> int:
    """How many of all 2^m sign patterns reach ``threshold``, 2^HELD_BITS patterns at a time."""
    low, high = w[-HELD_BITS:], w[:-HELD_BITS]
    low_stats = np.array(list(itertools.product((1.0, -1.0), repeat=len(low)))) @ low
    hits = 0
    for signs in itertools.product((1.0, -1.0), repeat=len(high)):
        hits += int(np.sum(np.abs(low_stats + float(np.dot(signs, high))) >= threshold))
    return hits


def _sampled(w: np.ndarray, threshold: float, permutations: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    values, sizes = np.unique(w, return_counts=True)
    few = len(values) * CELL_DRAW_COST <= len(w)
    hits = 0
    for start in range(0, permutations, BLOCK):
        size = min(BLOCK, permutations - start)
        if few:  # the signs of equal weights only matter through how many are positive
            positive = rng.binomial(sizes, 0.5, size=(size, len(values)))
            stats = (2 * positive - sizes) @ values
        else:
            signs = np.unpackbits(rng.integers(0, 256, size=(size, (len(w) + 7) // 8), dtype=np.uint8), axis=1)
            stats = (2.0 * signs[:, : len(w)] - 1.0) @ w
        hits += int(np.sum(np.abs(stats) >= threshold))
    return hits


def permutation_p(
    diff: QueryScores, metric: str, permutations: int = 10_000, seed: int = 0, cluster: bool = True
) -> float:
    """The p-value of ``flip_test``."""
    return flip_test(diff, metric, permutations, seed, cluster).p
