"""Per-query metric values and the rules that turn them into a benchmark's official metrics.

Each benchmark gives, for every metric, one value per query in its natural unit (a hit is 0 or 1, an AP is in
[0, 1]; NaN where the metric does not cover the query, such as another FashionIQ category) and a rule:

- ``rate``: ``100 * sum / n`` over the covered queries, summed in query order (every R@K, CIRR's soft scores);
- ``mean``: ``100 * numpy.mean`` over the covered queries (CIRCO's AP@K);
- ``mean_of``: the plain mean of other metrics, summed in order (FashionIQ's, GeneCIS's and FreeDom's averages,
  CIRR's Avg).

The rules are written to repeat the official formulas operation for operation, so ``official_metrics`` equals the
benchmark's ``metrics`` exactly (not just within rounding); statistics resample the same vectors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class Rule:
    kind: Literal["rate", "mean", "mean_of"]
    of: tuple[str, ...] = ()


RATE, MEAN = Rule("rate"), Rule("mean")


@dataclass
class QueryScores:
    """Per-query values of every metric of one evaluation, aligned with ``query_ids``; ``strata`` names each
    query's part (FashionIQ category, GeneCIS task, shapes style, or one part), within which resampling happens.
    ``clusters`` names each query's cluster of dependent queries (CIRR's image set, a repeated reference image;
    ``Benchmark.query_clusters``), resampled and sign-flipped whole; None: every query is its own."""

    query_ids: list[str]
    strata: list[str]
    values: dict[str, np.ndarray] = field(default_factory=dict)
    rules: dict[str, Rule] = field(default_factory=dict)
    clusters: list[str] | None = None

    def add(self, name: str, values: Sequence[float] | np.ndarray, rule: Rule = RATE) -> None:
        array = np.asarray(values, dtype=np.float64)
        if array.shape != (len(self.query_ids),):
            raise ValueError(f"{name}: {array.shape[0]} values for {len(self.query_ids)} queries")
        self.values[name], self.rules[name] = array, rule

    def add_part(self, name: str, part: str, values: Sequence[float], rule: Rule = RATE) -> None:
        """A metric of one stratum only: ``values`` are its queries' in order; other queries get NaN."""
        full = np.full(len(self.query_ids), np.nan)
        full[self.part_index(part)] = np.asarray(values, dtype=np.float64)
        self.add(name, full, rule)

    def derive(self, name: str, *of: str) -> None:
        """A metric that is the plain mean of others (only when all of them exist)."""
        if all(o in self.rules for o in of):
            self.rules[name] = Rule("mean_of", tuple(of))

    def part_index(self, part: str) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.strata) == part)

    @property
    def parts(self) -> list[str]:
        return list(dict.fromkeys(self.strata))

    def subset(self, keep: np.ndarray) -> QueryScores:
        """The same metrics on some queries (in their order)."""
        out = QueryScores([self.query_ids[i] for i in keep], [self.strata[i] for i in keep], rules=dict(self.rules))
        out.clusters = None if self.clusters is None else [self.clusters[i] for i in keep]
        out.values = {k: v[keep] for k, v in self.values.items()}
        return out


def combine(rule: Rule, values: np.ndarray | None, metrics: Mapping[str, float]) -> float:
    """One metric from its per-query values (or from other metrics), exactly as the official code computes it."""
    if rule.kind == "mean_of":  # summed in order, as every official average is (np.mean sums pairwise)
        return sum(metrics[o] for o in rule.of) / len(rule.of)
    covered = values[~np.isnan(values)]
    if rule.kind == "mean":
        return 100.0 * float(np.mean(covered))
    return 100.0 * sum(covered.tolist()) / len(covered)


def official_metrics(scores: QueryScores) -> dict[str, float]:
    """Every metric of ``scores`` (derived ones after their parts)."""
    out: dict[str, float] = {}
    for name, rule in sorted(scores.rules.items(), key=lambda item: item[1].kind == "mean_of"):
        out[name] = combine(rule, scores.values.get(name), out)
    return out
