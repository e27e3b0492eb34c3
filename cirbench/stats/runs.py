"""Per-query metrics of a stored run: its rankings scored again against its split's annotations.

The split is read from the folder the run recorded (or ``--root``) with the run's own protocol options; the metrics
recomputed from the stored rankings must equal the ones the run recorded, so a changed annotation file is caught
instead of producing intervals around other numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from cirbench.benchmarks import get_benchmark
from cirbench.benchmarks.base import Benchmark, BenchmarkSplit, Rankings
from cirbench.benchmarks.ranks import RankingsWithPositives
from cirbench.errors import ResultError
from cirbench.evaluation.evaluator import load_split
from cirbench.evaluation.prepare import limit_queries
from cirbench.query_scores import QueryScores, official_metrics
from cirbench.results import RunResult, find_result, load_rankings
from cirbench.scoring import data_folder


@dataclass
class RunScores:
    result: RunResult
    benchmark: Benchmark
    data: BenchmarkSplit
    scores: QueryScores
    metrics: dict[str, float]  # every metric as recorded, derived ones (CIRR Avg) included
    split_queries: int = 0  # queries in the whole split (a --limit run scores the first ``limit`` of them)

    @property
    def limit(self) -> int | None:
        return run_limit(self.result)

    def query_set(self) -> str:
        """What a comparison refusal says about this run: ``a --limit 50 run (50 of 4181 queries)``."""
        n = len(self.scores.query_ids)
        if self.limit is not None:
            return f"a --limit {self.limit} run ({n} of {self.split_queries} queries)"
        return f"a full run ({n} queries)"


def run_limit(result: RunResult) -> int | None:
    """The ``--limit`` a run was made with (None: every query of its split)."""
    limit = result.key_fields.get("limit", result.run_settings.get("limit"))
    return int(limit) if isinstance(limit, int) and not isinstance(limit, bool) else None


def run_scores(result: RunResult, root: Path | None = None) -> RunScores:
    """Per-query metrics of ``result`` (``root`` overrides the data folder the run recorded)."""
    bench = get_benchmark(result.benchmark.name)
    label = f"run {result.run_key} ({result.label})"
    if not result.metrics:
        raise ResultError(
            f"{label} has no local labels ({result.benchmark.split}): only its evaluation server scores it"
        )
    folder = data_folder(result, root)
    recorded = result.benchmark.options
    options = {o.name: recorded[o.name] for o in bench.options if o.keyed and o.name in recorded}
    data = load_split(bench, result.benchmark.split, folder, options)  # read once inside keep_splits()
    split_queries = sum(len(part.queries) for part in data.parts)
    data = limit_queries(data, run_limit(result))  # a --limit run ranked the split's first N queries
    raw = load_rankings(result)
    rankings = Rankings(top=raw["top"], subset=raw.get("subset"))
    if raw.get("positive_ranks"):
        rankings = RankingsWithPositives(top=raw["top"], subset=raw.get("subset"), positive_ranks=raw["positive_ranks"])
    if result.skipped.queries_dropped:
        data = _only_ranked(data, rankings)
    scores = bench.per_query(data, rankings)
    declared = bench.query_clusters(data)  # dependent queries: resampled and flipped whole (stats/clusters.py)
    if declared is not None:
        scores.clusters = [declared.get(q, f"query {q}") for q in scores.query_ids]
    metrics = official_metrics(scores)
    changed = [m for m, v in result.metrics.items() if m in metrics and abs(metrics[m] - v) > 1e-5]
    if changed:
        m = changed[0]
        raise ResultError(
            f"{label}: the annotations under {folder} give {m} {metrics[m]:.4f}, the run recorded "
            f"{result.metrics[m]:.4f}; they changed since the run (evaluate again) or --root points at other data"
        )
    # The values shown are the recorded ones (stored at 6 decimals; equal to the recomputed ones within 1e-5).
    return RunScores(
        result,
        bench,
        data,
        scores,
        {**metrics, **{m: v for m, v in result.metrics.items() if m in metrics}},
        split_queries,
    )


def _only_ranked(data: BenchmarkSplit, rankings: Rankings) -> BenchmarkSplit:
    """A --skip-missing run ranked only the queries it kept: score those."""
    parts = [dataclasses.replace(p, queries=[q for q in p.queries if q.qid in rankings.top]) for p in data.parts]
    return dataclasses.replace(data, parts=parts)


def load_run(results_dir: Path, run: str, root: Path | None = None) -> RunScores:
    """A run by key (unique prefix) or result file, with its per-query metrics."""
    return run_scores(find_result(results_dir, run), root)


def comparable(a: RunScores, b: RunScores) -> None:
    """Refuse a paired comparison of runs on different benchmarks, splits, protocols or query sets."""
    ra, rb = a.result.benchmark, b.result.benchmark
    where = f"runs {a.result.run_key} and {b.result.run_key}"
    if (ra.name, ra.split) != (rb.name, rb.split):
        raise ResultError(f"{where} are on {ra.name}/{ra.split} and {rb.name}/{rb.split}: compare runs of one split")
    keyed = [o.name for o in a.benchmark.options if o.keyed]
    differ = [o for o in keyed if ra.options.get(o) != rb.options.get(o)]
    if differ:
        o = differ[0]
        raise ResultError(
            f"{where} use different protocols ({o}={ra.options.get(o)} against {o}={rb.options.get(o)}): "
            "a paired test needs the same protocol"
        )
    if a.limit != b.limit:
        raise ResultError(
            f"{where}: A is {a.query_set()}, B {b.query_set()}; compare runs of the same query set (both full, "
            "or both with the same --limit)"
        )
    if a.scores.query_ids != b.scores.query_ids:
        only = sorted(set(a.scores.query_ids) ^ set(b.scores.query_ids))
        raise ResultError(
            f"{where} ranked different queries ({len(only)} differ, e.g. {only[:3]}): "
            "a paired test needs the same queries (was one run made with --skip-missing?)"
        )
