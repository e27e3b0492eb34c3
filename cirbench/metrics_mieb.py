"""mteb/MIEB retrieval metrics as pure functions: each query's positive positions in, fractions and percentages out.

mteb scores retrieval with ``pytrec_eval`` (mteb 2.26 ``_evaluators/retrieval_metrics.py``) and names the results
``ndcg_at_K``, ``recall_at_K``, ``hit_rate_at_K`` and ``mrr_at_K`` for K in ``(1, 3, 5, 10, 20, 100, 1000)``:

- nDCG@K (``ndcg_cut``) with binary relevance: ``sum 1/log2(rank + 2)`` over the positives in the top K (0-based
  rank), divided by the same sum over the first ``min(#positives, K)`` ranks;
- recall@K (``recall``): the *fraction* of a query's positives in the top K, not the CIR Recall@K;
- hit_rate@K (``success``): 1 when any positive is in the top K: this is the CIR Recall@K;
- MRR@K: ``1 / (rank + 1)`` of the first positive in the top K, else 0.

A query is given as its positives' 0-based positions in the ranking (sorted) and how many positives it has, so the
same functions score a stored top-K list and an engine's full-ranking positions. mteb averages each per-query value
over the queries (and rounds to 5 decimals); here the mean is ``100 * sum / n`` in query order, the ``rate`` rule of
``cirbench.query_scores``, so per-query values give back these numbers exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

K_VALUES: tuple[int, ...] = (1, 3, 5, 10, 20, 100, 1000)  # mteb AbsTaskRetrieval.k_values
MEASURES: tuple[str, ...] = ("ndcg", "hit_rate", "recall", "mrr")
MAIN_METRIC = "ndcg_at_10"  # CIRRIT2IRetrieval / FashionIQIT2IRetrieval main_score

Row = tuple[Sequence[int], int]  # (sorted 0-based positions of the positives found, number of positives)


def metric_name(measure: str, k: int) -> str:
    """mteb's name: ``ndcg_at_10``, ``hit_rate_at_1``, ``recall_at_5``, ``mrr_at_10``."""
    return f"{measure}_at_{k}"


def metric_names(ks: Sequence[int] = K_VALUES) -> tuple[str, ...]:
    return tuple(metric_name(m, k) for m in MEASURES for k in ks)


def _check(ranks: Sequence[int], n_positives: int, k: int) -> None:
    if n_positives < 1:
        raise ValueError("a query needs at least one positive (mteb drops queries without one)")
    if len(ranks) > n_positives:
        raise ValueError(f"{len(ranks)} positive positions for {n_positives} positives")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def ndcg_at_k(ranks: Sequence[int], n_positives: int, k: int) -> float:
    """Binary-relevance nDCG@K of one query, as ``trec_eval``'s ``ndcg_cut`` computes it (a fraction)."""
    _check(ranks, n_positives, k)
    dcg = 0.0
    for r in sorted(ranks):
        if r < k:
            dcg += 1.0 / math.log2(r + 2)
    ideal = 0.0
    for i in range(min(n_positives, k)):
        ideal += 1.0 / math.log2(i + 2)
    return dcg / ideal


def hit_at_k(ranks: Sequence[int], n_positives: int, k: int) -> float:
    """1.0 when any positive is among the first K (``success``; the CIR Recall@K), else 0.0."""
    _check(ranks, n_positives, k)
    return 1.0 if any(r < k for r in ranks) else 0.0


def recall_fraction_at_k(ranks: Sequence[int], n_positives: int, k: int) -> float:
    """The fraction of the query's positives among the first K (``recall``)."""
    _check(ranks, n_positives, k)
    return sum(1 for r in ranks if r < k) / n_positives


def reciprocal_rank_at_k(ranks: Sequence[int], n_positives: int, k: int) -> float:
    """``1 / (rank + 1)`` of the first positive among the first K, else 0.0 (mteb's MRR@K terms)."""
    _check(ranks, n_positives, k)
    first = min(ranks, default=None)
    return 1.0 / (first + 1) if first is not None and first < k else 0.0


PER_QUERY = {
    "ndcg": ndcg_at_k,
    "hit_rate": hit_at_k,
    "recall": recall_fraction_at_k,
    "mrr": reciprocal_rank_at_k,
}


def mieb_per_query(rows: Sequence[Row], ks: Sequence[int] = K_VALUES) -> dict[str, list[float]]:
    """Every metric's per-query value (a fraction), by mteb name, for each K in ``ks``."""
    if not rows:
        raise ValueError("mieb_per_query: no queries to score")
    return {metric_name(m, k): [fn(r, n, k) for r, n in rows] for m, fn in PER_QUERY.items() for k in ks}


def mieb_metrics(rows: Sequence[Row], ks: Sequence[int] = K_VALUES) -> dict[str, float]:
    """Every metric in percent: ``100 * sum / n`` over the queries, in query order (mteb reports the fraction)."""
    return {name: 100.0 * sum(values) / len(values) for name, values in mieb_per_query(rows, ks).items()}
