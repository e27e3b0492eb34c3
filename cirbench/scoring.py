"""Score ranking files against a loaded split: read, normalise ids through the benchmark, check coverage, score.

Accepted files: plain JSON ``{qid: [ranked ids]}`` for every benchmark, and a benchmark's server format where it
has one (CIRR: ``{"version": "rc2", "metric": "recall" | "recall_subset", "<pairid>": [...]}``). Queries are never
dropped silently: missing ones raise unless ``allow_missing=True``, which scores them as misses and reports the
count.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cirbench.benchmarks.base import Benchmark, BenchmarkSplit, Rankings
from cirbench.errors import ResultError, ScoringError

if TYPE_CHECKING:
    from cirbench.results import RunResult

Kind = Literal["top", "subset"]


def load_rankings_file(path: str | Path, benchmark: Benchmark, kind: Kind | None = None) -> dict[str, list[str]]:
    """Read one rankings file into ``{qid: [canonical ids]}``.

    ``kind`` says whether it holds full rankings (``"top"``) or subset rankings (``"subset"``); a server-format
    file says its own kind, which must agree when given. Plain files default to ``"top"``.
    """
    from cirbench.benchmarks.annotations import read_annotation_json

    path = Path(path)
    # the strict reader: a query id twice in the file is refused (json would keep the last list silently)
    raw = read_annotation_json(path, "give each query id once, as {query id: [ranked ids]}")
    if not isinstance(raw, dict):
        raise ScoringError(f"{path}: expected a JSON object {{query id: [ranked ids]}}, got {type(raw).__name__}")
    benchmark.rankings_file_header(raw, path, kind)
    out: dict[str, list[str]] = {}
    for key, ids in raw.items():
        qid = benchmark.normalise_query_id(key)
        if not isinstance(ids, list):
            raise ScoringError(f"{path}: query {key}: expected a list of ranked ids, got {type(ids).__name__}")
        if qid in out:
            raise ScoringError(f"{path}: query {key} appears twice after id normalisation")
        out[qid] = [benchmark.normalise_image_id(v, qid) for v in ids]
    return out


def load_rankings(benchmark: Benchmark, top_path: str | Path, subset_path: str | Path | None = None) -> Rankings:
    """``Rankings`` from a full-ranking file and, for CIRR, an optional subset-ranking file."""
    top = load_rankings_file(top_path, benchmark, "top")
    subset = load_rankings_file(subset_path, benchmark, "subset") if subset_path else None
    return Rankings(top=top, subset=subset)


def _examples(ids: list[str]) -> str:
    return ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")


def check_rankings(data: BenchmarkSplit, rankings: Rankings, allow_missing: bool = False) -> list[str]:
    """Validate coverage and ids; return the query ids without a ranking (allowed with ``allow_missing``)."""
    qids = [q.qid for q in data.queries]
    known = set(qids)
    for label, table in (("rankings", rankings.top), ("subset rankings", rankings.subset or {})):
        unknown = [q for q in table if q not in known]
        if unknown:
            raise ScoringError(
                f"{len(unknown)} query ids in the {label} are not in {data.benchmark} {data.split} "
                f"(wrong split?): {_examples(unknown)}"
            )
    missing = [q for q in qids if q not in rankings.top]
    if missing and not allow_missing:
        raise ScoringError(
            f"{len(missing)} of {len(qids)} {data.benchmark} {data.split} queries have no ranking: "
            f"{_examples(missing)}; pass --allow-missing (allow_missing=True in Python) to score them as misses"
        )
    for part in data.parts:
        gallery = set(part.gallery) if part.gallery else None  # a gallery the split does not know
        for q in part.queries:
            allowed = set(q.candidates) if q.candidates is not None else gallery
            ranked = rankings.top.get(q.qid, [])
            bad = [i for i in ranked if allowed is not None and i not in allowed]
            if bad:
                raise ScoringError(f"query {q.qid}: ranked ids not in its gallery (wrong split?): {_examples(bad)}")
            twice = sorted(i for i, n in Counter(ranked).items() if n > 1) if len(set(ranked)) != len(ranked) else []
            if twice:
                raise ScoringError(
                    f"query {q.qid}: ranks {_examples(twice)} more than once (duplicate ids); rank each image once"
                )
    return missing


def short_rankings(benchmark: Benchmark, data: BenchmarkSplit, rankings: Rankings) -> tuple[int, int]:
    """(depth, queries ranked shorter than it): depth is the deepest cutoff among the benchmark's metrics (``@50``),
    capped per query by what can be ranked (its candidates, or its gallery less the reference when removed).

    Why: a list of 3 ids scores mAP@50 as if ranks 4-50 were all misses, without any error; the server refuses it.
    """
    cutoffs = [int(match[1]) for name in benchmark.metric_names if (match := re.search(r"@(\d+)$", name))]
    if not cutoffs:
        return 0, 0
    depth, short = max(cutoffs), 0
    for part in data.parts:
        pool = len(part.gallery) - int(part.remove_reference) if part.gallery else None
        for q in part.queries:
            ranked = rankings.top.get(q.qid)
            available = len(q.candidates) if q.candidates is not None else pool
            if ranked is not None and len(ranked) < min(depth, available if available is not None else depth):
                short += 1
    return depth, short


def score(
    benchmark: Benchmark, data: BenchmarkSplit, rankings: Rankings, allow_missing: bool = False
) -> dict[str, Any]:
    """Official metrics of ``rankings`` on ``data``.

    Returns ``{"benchmark", "split", "metrics": {name: percent}, "n_queries", "n_missing", "n_short", "depth",
    "warnings", "options"}``; missing queries count as misses only with ``allow_missing=True``. ``n_short`` queries
    have fewer ranked ids than the deepest cutoff of the benchmark's metrics (``depth``), which is warned about.
    """
    if not data.has_labels:
        raise ScoringError(f"{data.benchmark} {data.split} has no public labels: only its server can score it")
    missing = check_rankings(data, rankings, allow_missing)
    depth, short = short_rankings(benchmark, data, rankings)
    warnings = []
    if short:
        warnings.append(
            f"{short} of {len(data.queries)} queries have fewer than {depth} ranked ids: metrics up to @{depth} "
            f"count the absent ranks as misses, and an evaluation server expects {depth} ids per query"
        )
    if missing:
        top = {**rankings.top, **{q: [] for q in missing}}
        subset: Mapping[str, list[str]] | None = rankings.subset
        if any(q.subset is not None for q in data.queries):
            subset = {**(rankings.subset or {}), **{q: [] for q in missing}}
        rankings = Rankings(top=top, subset=dict(subset) if subset is not None else None, scores=rankings.scores)
    try:
        metrics = benchmark.metrics(data, rankings)
    except ValueError as error:  # the metric functions refuse inconsistent rankings (duplicates, ambiguity)
        raise ScoringError(_by_id(str(error), data)) from error
    return {
        "benchmark": data.benchmark,
        "split": data.split,
        "metrics": metrics,
        "n_queries": len(data.queries),
        "n_missing": len(missing),
        "n_short": short,
        "depth": depth,
        "warnings": warnings,
        "options": dict(data.options),
    }


def _by_id(message: str, data: BenchmarkSplit) -> str:
    """The metric functions number a single part's queries by position (``query 1: ...``): name its id instead,
    and the CLI's flag beside the Python name of the subset rankings."""
    found = re.match(r"query (\d+): ", message)
    if found and len(data.parts) == 1 and int(found[1]) < len(data.queries):
        message = f"query {data.queries[int(found[1])].qid}: " + message[found.end() :]
    return message.replace("(Rankings.subset)", "(--subset-rankings; Rankings.subset in Python)")


# --------------------------------------------------------------------------------------------- stored runs


def stored_rankings(raw: Mapping[str, Any]) -> Rankings:
    """The ``Rankings`` of a stored rankings record (``results.load_rankings``), full-ranking positions included."""
    from cirbench.benchmarks.ranks import RankingsWithPositives

    if raw.get("positive_ranks"):
        return RankingsWithPositives(top=raw["top"], subset=raw.get("subset"), positive_ranks=raw["positive_ranks"])
    return Rankings(top=raw["top"], subset=raw.get("subset"))


def data_folder(result: RunResult, root: Path | None = None) -> Path | None:
    """Where a stored run's split is read again (stats, compare, inspect, verify, leaderboard --ci): ``root`` when
    given, else the folder the run recorded, which must still be there (else the loader would only say that the
    annotations are not found, without the run or the way out)."""
    from cirbench.errors import ResultError, shown

    if root is not None:
        return Path(root)
    recorded = Path(result.benchmark.root) if result.benchmark.root else None
    if recorded is not None and not recorded.exists():
        raise ResultError(
            f"run {result.run_key} ({result.benchmark.name} {result.benchmark.split}) recorded its data under "
            f"{shown(str(recorded))}, which is not there now (moved, or another machine?): give --root with the "
            "folder that holds it"
        )
    return recorded


def rescore(result: RunResult, root: Path | None = None) -> dict[str, float]:
    """The metrics of a stored run scored again from its stored rankings and its split's annotations, read as the
    evaluation read them: the recorded benchmark, split, data folder (``root`` overrides it) and protocol options,
    the same ``--limit`` queries, and (``--skip-missing``) only the queries it ranked. Raises ``ResultError`` when the
    run cannot be checked here (no local labels, no rankings), the split's own error when its data is not found, and
    ``IntegrityError`` when the result or its rankings are damaged."""
    import dataclasses

    from cirbench.benchmarks import get_benchmark
    from cirbench.evaluation.evaluator import load_split
    from cirbench.evaluation.prepare import limit_queries
    from cirbench.results import load_rankings

    if not result.metrics:
        where = f"{result.benchmark.name}/{result.benchmark.split}"
        raise ResultError(f"no local labels ({where}): only its evaluation server scores it")
    bench = get_benchmark(result.benchmark.name)
    recorded = result.benchmark.options
    options = {o.name: recorded[o.name] for o in bench.options if o.name in recorded}
    folder = data_folder(result, root)
    data = load_split(bench, result.benchmark.split, folder, options)
    if not data.has_labels:
        raise ResultError(f"{data.benchmark} {data.split} has no public labels here: only its server scores it")
    rankings = stored_rankings(load_rankings(result))
    limit = result.key_fields.get("limit")
    data = limit_queries(data, int(limit)) if isinstance(limit, int) else data
    if result.skipped.queries_dropped:  # a --skip-missing run ranked only the queries it kept
        parts = [dataclasses.replace(p, queries=[q for q in p.queries if q.qid in rankings.top]) for p in data.parts]
        data = dataclasses.replace(data, parts=parts)
    return score(bench, data, rankings)["metrics"]


def differing_metrics(stored: Mapping[str, float], rescored: Mapping[str, float], tol: float = 1e-5) -> list[str]:
    """Stored metrics the rescoring does not give back (results store 6 decimals): ``name stored X, rescored Y``."""
    out = []
    for name, value in stored.items():
        again = rescored.get(name)
        if again is None:
            out.append(f"{name} stored {value:.4f}, not rescored")
        elif not abs(float(again) - float(value)) <= tol:
            out.append(f"{name} stored {value:.4f}, rescored {float(again):.4f}")
    return out
