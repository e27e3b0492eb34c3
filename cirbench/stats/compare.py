"""A paired comparison of two runs: the main metric's test as the primary result, Holm over a declared family.

The main metric (the benchmark's headline, under the runs' protocol) is the question asked before looking: its
sign-flip p is reported raw. The other metrics are secondary; their p-values are Holm-adjusted within a *declared*
family, named in the output:

- ``headline``: the benchmark's leaderboard columns (CIRR's R@K, Rsubset@K and Avg; CIRCO's mAP@K; shapes' four),
  so the family does not grow with the per-part and per-aspect metrics an annotation file happens to add;
- ``all``: every metric the run has.

Metrics outside the family get no adjusted p.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cirbench.errors import UsageError, shown
from cirbench.stats.bootstrap import FlipTest, Interval, difference, flip_test, holm, paired
from cirbench.stats.clusters import units
from cirbench.stats.runs import RunScores

FAMILIES = ("headline", "all")
CLUSTER_CHOICES = ("auto", "none")


def use_clusters(choice: str) -> bool:
    """``--cluster auto`` (the benchmark's declaration) or ``none`` (every query its own unit)."""
    if choice not in CLUSTER_CHOICES:
        raise UsageError(
            f"--cluster {shown(choice)}: choose auto (the benchmark's clusters of dependent queries) or none "
            "(every query on its own)"
        )
    return choice == "auto"


def family_metrics(run: RunScores, family: str) -> list[str]:
    """The metrics of a declared family, in the run's metric order."""
    if family not in FAMILIES:
        raise UsageError(f"--family {shown(family)}: choose {' or '.join(FAMILIES)}")
    present = list(run.metrics)
    if family == "all":
        return present
    options = run.result.benchmark.options
    declared = run.benchmark.leaderboard_columns or run.benchmark.metric_names_for(options)
    chosen = [m for m in declared if m in run.metrics]
    if not chosen:  # a protocol with its own metric names (protocol=mieb): its metric list
        chosen = [m for m in run.benchmark.metric_names_for(options) if m in run.metrics]
    main = run.result.main_metric
    return chosen if main not in run.metrics or main in chosen else [main, *chosen]


@dataclass
class Comparison:
    a: RunScores
    b: RunScores
    main: str
    family: str
    family_metrics: list[str]
    intervals: dict[str, Interval]
    tests: dict[str, FlipTest]
    adjusted: dict[str, float] = field(default_factory=dict)  # Holm within the family
    clusters: int = 0  # units resampled and flipped (0: queries)

    def rows(self, order: list[str]) -> dict[str, dict]:
        out = {}
        for m in order:
            i = self.intervals[m]
            out[m] = {
                "a": self.a.metrics[m],
                "b": self.b.metrics[m],
                "difference": self.a.metrics[m] - self.b.metrics[m],
                "low": i.low,
                "high": i.high,
                "design_effect": i.design_effect,
                "p": self.tests[m].p,
                "p_method": self.tests[m].method,
                "p_holm": self.adjusted.get(m),
                "primary": m == self.main,
            }
        return out


def compare_runs(
    a: RunScores, b: RunScores, resamples: int = 10_000, seed: int = 0, family: str = "headline", cluster: bool = True
) -> Comparison:
    """The paired interval, sign-flip test and design effect of every metric, Holm within ``family``."""
    members = family_metrics(a, family)
    found = paired(a.scores, b.scores, resamples, seed, cluster=cluster)
    diff = difference(a.scores, b.scores)
    tests = {m: flip_test(diff, m, resamples, seed, cluster) for m in a.metrics}
    adjusted = holm({m: tests[m].p for m in members})
    grouped = units(a.scores, cluster)
    return Comparison(
        a,
        b,
        a.result.main_metric,
        family,
        members,
        found,
        tests,
        adjusted,
        0 if grouped is None else grouped.count,
    )
