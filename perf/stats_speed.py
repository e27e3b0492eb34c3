"""Benchmark: bootstrap intervals and a paired comparison at CIRR val size.

Why: `cirbench stats` and `compare` must stay interactive (issue target: 10,000 resamples over 4,181 queries and
7 metrics in under 1 s on 2 cores). The per-query vectors are CIRR-like: each query's target gets a rank in the
gallery and in its group, drawn so that R@1/5/10/50 and Rsubset@1/2/3 land near published CIRR rates, and the
hits follow from the ranks (so they are nested, as real hits are: fewer distinct rows than independent coin
flips). Avg is derived from R@5 and Rsubset@1.

Run:
    python perf/stats_speed.py --queries 4181 --resamples 10000 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=4181)
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads (default: the library's)")
    args = parser.parse_args()
    if args.threads is not None:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(args.threads)
    import numpy as np

    from cirbench.query_scores import QueryScores, official_metrics
    from cirbench.stats.bootstrap import difference, intervals, paired, permutation_p

    rng = np.random.default_rng(0)
    ks, subset_ks = (1, 5, 10, 50), (1, 2, 3)

    def run() -> QueryScores:
        n = args.queries
        rank = np.minimum(rng.geometric(0.06, size=n), 1000)  # R@1 ~ 6 %, R@50 ~ 95 % before the tail
        rank = np.where(rng.random(n) < 0.2, rank, np.maximum(1, rank // 4))
        sub_rank = rng.integers(1, 6, size=n)
        scores = QueryScores([str(i) for i in range(n)], ["all"] * n)
        for k in ks:
            scores.add(f"R@{k}", (rank <= k).astype(float))
        for k in subset_ks:
            scores.add(f"Rsubset@{k}", (sub_rank <= k).astype(float))
        scores.derive("Avg", "R@5", "Rsubset@1")
        return scores

    def distinct() -> QueryScores:
        """The worst case: every query's row of values is different (AP-like values), one cell per query."""
        scores = run()
        for name in list(scores.values):
            scores.values[name] = rng.random(args.queries)
        return scores

    metrics = len(ks) + len(subset_ks)
    print(f"{args.queries:,} queries, {metrics} metrics (+ Avg), {args.resamples:,} resamples, {args.repeat} repeats")
    for label, make in (("CIRR-like hits", run), ("every row distinct (worst case)", distinct)):
        a, b = make(), make()
        official = official_metrics(a)
        timings: dict[str, list[float]] = {"stats (intervals)": [], "compare (paired intervals + 8 p-values)": []}
        for _ in range(args.repeat):
            start = time.perf_counter()
            intervals(a, official, args.resamples)
            timings["stats (intervals)"].append(time.perf_counter() - start)
            start = time.perf_counter()
            paired(a, b, args.resamples)
            diff = difference(a, b)
            for metric in official:
                permutation_p(diff, metric, args.resamples)
            timings["compare (paired intervals + 8 p-values)"].append(time.perf_counter() - start)
        for name, values in timings.items():
            median = statistics.median(values)
            print(f"{label}: {name}: median {median:.3f} s (min {min(values):.3f}, max {max(values):.3f})")


if __name__ == "__main__":
    main()
