"""Metrics of the class-level domain-conversion benchmarks (Pic2Word ImageNet-R, the FreeDom suite): pure functions.

A query has a *set* of relevant gallery items (same class, target domain), possibly empty; its input here is the
sorted 0-based positions of those items in its full ranking and how many there are. Queries without a positive
count as 0 in every mean, as both official codes do. Results are percentages, unrounded (FreeDom rounds each
(source, target) pair to 2 decimals before averaging; cirbench keeps full precision and says so in the result).

- ``true_recall``: ``|top-K ∩ G| / (|G| + 1e-5)``, Pic2Word ``get_metrics_imgnet`` (src/eval_utils.py#L603-L632)
  and FreeDom ``metrics_calc`` (utils_retrieval.py#L206-L216): the fraction of the relevant set retrieved, not
  the hit rate of CIRR or FashionIQ.
- ``precision``: ``|top-K ∩ G| / K`` (Pic2Word) or ``/ (min(|G|, K) + 1e-5)`` (FreeDom).
- ``radenovic_ap``: the trapezoidal AP of FreeDom ``compute_ap`` (utils.py#L134-L161), lower than standard AP.
"""

from __future__ import annotations

from collections.abc import Sequence

EPS = 1e-5


def hits_within(ranks: Sequence[int], k: int) -> int:
    """How many positives sit in the top ``k`` (ranks are 0-based)."""
    return sum(1 for r in ranks if r < k)


def _mean(values: Sequence[float], name: str) -> float:
    if not values:
        raise ValueError(f"{name}: no queries to score")
    return 100.0 * sum(values) / len(values)


def true_recall(rows: Sequence[tuple[Sequence[int], int]], k: int) -> float:
    """Mean over queries of ``|top-k ∩ G| / (|G| + 1e-5)``; ``rows`` are (positive ranks, |G|) per query."""
    return _mean([hits_within(ranks, k) / (n + EPS) for ranks, n in rows], "true_recall")


def precision(rows: Sequence[tuple[Sequence[int], int]], k: int, convention: str = "pic2word") -> float:
    """Mean precision at ``k``: Pic2Word divides by ``k``, FreeDom by ``min(|G|, k) + 1e-5``."""
    if convention == "pic2word":
        values = [hits_within(ranks, k) / k for ranks, _ in rows]
    elif convention == "freedom":
        values = [hits_within(ranks, k) / (min(n, k) + EPS) for ranks, n in rows]
    else:
        raise ValueError(f"unknown precision convention {convention!r}")
    return _mean(values, "precision")


def radenovic_ap(ranks: Sequence[int], n_positives: int | None = None) -> float:
    """One query's AP as a fraction: ``Σ_j ½(j / r_j + (j + 1) / (r_j + 1)) / (n + 1e-5)``, ``j / r_j := 1`` at
    ``r_0 = 0``. ``ranks`` are the positives' 0-based positions in the full ranking, ascending; no positive gives 0.
    ``n_positives`` (default ``len(ranks)``) may exceed them: a positive that is not in the ranking at all (its
    image left out by ``--skip-missing``) is never retrieved and adds nothing, but still counts in ``n``."""
    ranks = list(ranks)
    if any(b <= a for a, b in zip(ranks, ranks[1:], strict=False)):
        raise ValueError(f"positive ranks must be strictly increasing, got {ranks[:5]}")
    n = len(ranks) if n_positives is None else n_positives
    if n < len(ranks):
        raise ValueError(f"{len(ranks)} positive positions for {n} positives")
    step = 1.0 / (n + EPS)
    ap = 0.0
    for j, rank in enumerate(ranks):
        precision_0 = 1.0 if rank == 0 else float(j) / rank
        precision_1 = float(j + 1) / (rank + 1)
        ap += (precision_0 + precision_1) * step / 2.0
    return ap


def mean_radenovic_ap(rows: Sequence[tuple[Sequence[int], int]]) -> float:
    """FreeDom's mAP in percent: the plain mean of ``radenovic_ap`` over every query, zero-positive ones included."""
    return _mean([radenovic_ap(ranks, n) for ranks, n in rows], "mean_radenovic_ap")
