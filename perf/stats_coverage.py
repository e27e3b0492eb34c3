"""The figures of docs/STATISTICS.md "Coverage and dependence": interval coverage in small and rare cases, and
the design effect and paired-test size on CIRR's real cluster structure with simulated hits.

    python perf/stats_coverage.py [--cirr /work/shared/annotations/cirr] [--reps 2000]

Everything is seeded; the numbers in the docs are this script's output.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from scipy import stats as sps

from cirbench.query_scores import MEAN, QueryScores
from cirbench.stats.bootstrap import difference, intervals, resampled
from cirbench.stats.clusters import design_effect, units
from cirbench.stats.flips import flip_test

RATE_CASES = [(50, 0.05), (20, 0.20), (40, 0.10), (100, 0.05), (220, 0.10), (500, 0.02), (100, 0.30), (800, 0.10)]
MEAN_CASES = [(20, 0.3), (50, 0.1), (220, 0.3)]  # n, share of queries with a non-zero AP (AP ~ Beta(2, 3))


def _scores(values: np.ndarray, rule=None, clusters=None) -> QueryScores:
    s = QueryScores([str(i) for i in range(len(values))], ["all"] * len(values), clusters=clusters)
    s.add("m", values, *(() if rule is None else (rule,)))
    return s


def rate_coverage(n: int, p: float, resamples: int) -> tuple[float, float]:
    """Exact over the data (every hit count k, weighted by its binomial probability): (percentile, chosen)."""
    perc = chosen = 0.0
    for k in range(n + 1):
        weight = sps.binom.pmf(k, n, p)
        if weight < 1e-12:
            continue
        s = _scores(np.r_[np.ones(k), np.zeros(n - k)])
        (draws,) = resampled([s], resamples, 0)
        low, high = np.percentile(draws["m"], [2.5, 97.5])
        perc += weight * (low <= 100 * p <= high)
        i = intervals(s, {"m": 100 * k / n}, resamples, 0)["m"]
        chosen += weight * (i.low <= 100 * p <= i.high)
    return perc, chosen


def mean_coverage(n: int, share: float, reps: int, resamples: int) -> tuple[float, float]:
    rng = np.random.default_rng(1)
    truth = 100 * share * 2 / 5
    perc = chosen = 0
    for _ in range(reps):
        v = np.where(rng.random(n) < share, rng.beta(2, 3, n), 0.0)
        s = _scores(v, MEAN)
        (draws,) = resampled([s], resamples, 0)
        low, high = np.percentile(draws["m"], [2.5, 97.5])
        perc += low <= truth <= high
        i = intervals(s, {"m": 100 * float(np.mean(v))}, resamples, 0)["m"]
        chosen += i.low <= truth <= i.high
    return perc / reps, chosen / reps


def cirr_sets(root: Path) -> list[str]:
    from cirbench.benchmarks import get_benchmark

    bench = get_benchmark("cirr")
    data = bench.load(root, "val")
    declared = bench.query_clusters(data)
    return [declared[q.qid] for q in data.queries]


def set_hits(sets: list[str], base: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Hits with P(hit) = logistic(logit(base) + u_set), u_set ~ N(0, sigma^2) shared by a set's queries."""
    names = {s: i for i, s in enumerate(dict.fromkeys(sets))}
    index = np.array([names[s] for s in sets])
    effect = rng.normal(0, sigma, len(names))[index]
    prob = 1 / (1 + np.exp(-(math.log(base / (1 - base)) + effect)))
    return (rng.random(len(sets)) < prob).astype(float)


def cirr_figures(sets: list[str], reps: int, resamples: int) -> None:
    rng = np.random.default_rng(2)
    for base, sigma in ((0.25, 0.5), (0.25, 1.0), (0.60, 1.0)):
        effects, sd_ratio = [], []
        for _ in range(5):
            s = _scores(set_hits(sets, base, sigma, rng), clusters=sets)
            effects.append(design_effect(s, "m", units(s)))
            (clu,) = resampled([s], resamples, 0, cluster=True)
            (que,) = resampled([s], resamples, 0, cluster=False)
            sd_ratio.append(float(np.std(clu["m"]) / np.std(que["m"])))
        print(
            f"CIRR structure, hit rate {base:.2f}, set effect sd {sigma} (logit): design effect "
            f"{np.mean(effects):.2f} (5 runs, {min(effects):.2f}-{max(effects):.2f}); bootstrap sd ratio "
            f"{np.mean(sd_ratio):.2f} (sqrt of the effect: {math.sqrt(np.mean(effects)):.2f})"
        )
    # coverage: new set effects and hits each run; the truth is E[logistic(logit(0.25) + u)], u ~ N(0, 1)
    truth = 100 * float(np.mean(1 / (1 + np.exp(-(math.log(1 / 3) + rng.normal(0, 1.0, 4_000_000))))))
    covered = {True: 0, False: 0}
    runs = max(reps // 5, 50)
    for _ in range(runs):
        s = _scores(set_hits(sets, 0.25, 1.0, rng), clusters=sets)
        for clustered in (True, False):
            i = intervals(s, {"m": 100 * float(np.mean(s.values["m"]))}, resamples, 0, cluster=clustered)["m"]
            covered[clustered] += i.low <= truth <= i.high
    print(
        f"CIRR structure, hit rate 0.25, set effect sd 1.0: 95 % intervals cover {100 * covered[True] / runs:.1f} % "
        f"over clusters, {100 * covered[False] / runs:.1f} % over queries ({runs} runs)"
    )
    # paired test size: A and B tie in expectation, but each set favours one of them (a shared set effect)
    for sigma in (0.5, 1.0):
        rejected = {True: 0, False: 0}
        for _ in range(reps):
            lean = rng.normal(0, sigma, len(set(sets)))
            names = {s: i for i, s in enumerate(dict.fromkeys(sets))}
            tilt = lean[[names[x] for x in sets]]
            logit = math.log(0.3 / 0.7)
            a = (rng.random(len(sets)) < 1 / (1 + np.exp(-(logit + tilt / 2)))).astype(float)
            b = (rng.random(len(sets)) < 1 / (1 + np.exp(-(logit - tilt / 2)))).astype(float)
            diff = difference(_scores(a, clusters=sets), _scores(b, clusters=sets))
            for clustered in (True, False):
                rejected[clustered] += flip_test(diff, "m", 2000, 0, clustered).p < 0.05
        print(
            f"paired null with a set lean sd {sigma}: the query-level sign-flip test rejects "
            f"{100 * rejected[False] / reps:.1f} %, the cluster one {100 * rejected[True] / reps:.1f} % ({reps} runs)"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cirr", type=Path, default=Path("/work/shared/annotations/cirr"))
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()
    for n, p in RATE_CASES:
        perc, chosen = rate_coverage(n, p, args.resamples)
        print(f"rate n={n} p={p}: percentile {100 * perc:.1f} %, cirbench {100 * chosen:.1f} % (exact over the data)")
    for n, share in MEAN_CASES:
        perc, chosen = mean_coverage(n, share, args.reps, args.resamples)
        print(f"AP mean n={n} share={share}: percentile {100 * perc:.1f} %, cirbench {100 * chosen:.1f} %")
    if (args.cirr / "captions" / "cap.rc2.val.json").is_file():
        cirr_figures(cirr_sets(args.cirr), args.reps // 2, args.resamples)
    else:
        print(f"no CIRR annotations under {args.cirr}: CIRR figures skipped", file=sys.stderr)


if __name__ == "__main__":
    main()
