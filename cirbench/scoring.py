"""Score ranking files against a loaded split: read, normalise ids, check coverage, call the official metrics.

Accepted files: plain JSON ``{qid: [ranked ids]}`` for every benchmark, and for CIRR the test-server format
``{"version": "rc2", "metric": "recall" | "recall_subset", "<pairid>": [...]}``. Queries are never dropped
silently: missing ones raise unless ``allow_missing=True``, which scores them as misses and reports the count.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from cirbench.benchmarks.base import Benchmark, BenchmarkSplit, Rankings

Kind = Literal["top", "subset"]
CIRR_METRIC_KIND: dict[str, Kind] = {"recall": "top", "recall_subset": "subset"}
_INT_QIDS = {"circo", "cirr"}


def _name(benchmark: str | Benchmark) -> str:
    return benchmark if isinstance(benchmark, str) else benchmark.name


def _stem(value: str) -> str:
    base = value.rsplit("/", 1)[-1]
    for ext in (".png", ".jpg", ".jpeg"):
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return base


def normalise_qid(benchmark: str, qid: Any) -> str:
    """Canonical query id: CIRCO/CIRR ids as decimal strings without leading zeros."""
    s = str(qid).strip()
    return str(int(s)) if benchmark in _INT_QIDS and s.lstrip("-").isdigit() else s


def normalise_image_id(benchmark: str, value: Any, qid: str = "") -> str:
    """Canonical image key: CIRCO ints (or digit strings) -> ``str(int)``; CIRR/FashionIQ names without folder
    or extension; GeneCIS bare ints -> ``coco:<id>`` for object tasks."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"query {qid}: ranked id {value!r} is neither an int nor a string")
    if benchmark == "circo":
        s = str(value).strip()
        if not s.isdigit():
            raise ValueError(f"query {qid}: {value!r} is not a COCO image id")
        return str(int(s))
    if benchmark in ("cirr", "fashioniq"):
        return _stem(str(value).strip())
    if benchmark == "genecis" and (isinstance(value, int) or str(value).isdigit()):
        if not qid.split("/")[0].endswith("_object"):
            raise ValueError(f"query {qid}: bare id {value!r} is only valid for object tasks (use the vg:... key)")
        return f"coco:{int(value)}"
    return str(value)


def load_rankings_file(path: str | Path, benchmark: str | Benchmark, kind: Kind | None = None) -> dict[str, list[str]]:
    """Read one rankings file into ``{qid: [canonical ids]}``.

    ``kind`` says whether it holds full rankings (``"top"``) or CIRR subset rankings (``"subset"``); for a
    CIRR server file it is taken from ``metric`` and must agree when given. Plain files default to ``"top"``.
    """
    name, path = _name(benchmark), Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read a JSON rankings file ({e})") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object {{query id: [ranked ids]}}, got {type(raw).__name__}")
    if "version" in raw or "metric" in raw:
        if name != "cirr":
            raise ValueError(f"{path}: 'version'/'metric' keys belong to the CIRR server format, not {name}")
        version, metric = raw.pop("version", None), raw.pop("metric", None)
        if version != "rc2":
            raise ValueError(f'{path}: CIRR server files need "version": "rc2", got {version!r}')
        if metric not in CIRR_METRIC_KIND:
            raise ValueError(f"{path}: CIRR \"metric\" must be 'recall' or 'recall_subset', got {metric!r}")
        if kind is not None and kind != CIRR_METRIC_KIND[metric]:
            raise ValueError(f"{path}: metric {metric!r} holds {CIRR_METRIC_KIND[metric]} rankings, not {kind}")
    out: dict[str, list[str]] = {}
    for key, ids in raw.items():
        qid = normalise_qid(name, key)
        if not isinstance(ids, list):
            raise ValueError(f"{path}: query {key}: expected a list of ranked ids, got {type(ids).__name__}")
        if qid in out:
            raise ValueError(f"{path}: query {key} appears twice after id normalisation")
        out[qid] = [normalise_image_id(name, v, qid) for v in ids]
    return out


def load_rankings(benchmark: str | Benchmark, top_path: str | Path, subset_path: str | Path | None = None) -> Rankings:
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
            raise ValueError(
                f"{len(unknown)} query ids in the {label} are not in {data.benchmark} {data.split} "
                f"(wrong split?): {_examples(unknown)}"
            )
    missing = [q for q in qids if q not in rankings.top]
    if missing and not allow_missing:
        raise ValueError(
            f"{len(missing)} of {len(qids)} {data.benchmark} {data.split} queries have no ranking: "
            f"{_examples(missing)}; pass allow_missing=True to score them as misses"
        )
    for part in data.parts:
        gallery = set(part.gallery) if part.gallery else None  # CIRCO without image_info: gallery unknown
        for q in part.queries:
            allowed = set(q.candidates) if q.candidates is not None else gallery
            bad = [i for i in rankings.top.get(q.qid, []) if allowed is not None and i not in allowed]
            if bad:
                raise ValueError(f"query {q.qid}: ranked ids not in its gallery (wrong split?): {_examples(bad)}")
    return missing


def score(
    benchmark: Benchmark, data: BenchmarkSplit, rankings: Rankings, allow_missing: bool = False
) -> dict[str, Any]:
    """Official metrics of ``rankings`` on ``data``.

    Returns ``{"benchmark", "split", "metrics": {name: percent}, "n_queries", "n_missing", "protocol"}``;
    missing queries count as misses only with ``allow_missing=True``.
    """
    if not data.has_labels:
        raise ValueError(f"{data.benchmark} {data.split} has no public labels: only its server can score it")
    missing = check_rankings(data, rankings, allow_missing)
    if missing:
        top = {**rankings.top, **{q: [] for q in missing}}
        subset: Mapping[str, list[str]] | None = rankings.subset
        if any(q.subset is not None for q in data.queries):
            subset = {**(rankings.subset or {}), **{q: [] for q in missing}}
        rankings = Rankings(top=top, subset=dict(subset) if subset is not None else None, scores=rankings.scores)
    return {
        "benchmark": data.benchmark,
        "split": data.split,
        "metrics": benchmark.metrics(data, rankings),
        "n_queries": len(data.queries),
        "n_missing": len(missing),
        "protocol": dict(data.protocol),
    }
