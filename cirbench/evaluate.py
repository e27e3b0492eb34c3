"""One evaluation: a method on a benchmark split -> rankings -> official metrics -> a result file.

The steps are plain functions so LinCIR's in-training model selection, ``eval``, ``eval --all`` and the demo
share them: ``prepare_split`` (image checks, skip policy), ``evaluate_method`` (features, queries, rankings,
metrics), ``result_record`` / ``run_and_save`` (the result file).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cirbench.backbones import Backbone
from cirbench.benchmarks.base import Benchmark, BenchmarkSplit, Part, Rankings
from cirbench.errors import DataError
from cirbench.features import encode_images
from cirbench.images import check_images
from cirbench.methods.base import Method
from cirbench.results import (
    SCHEMA_VERSION,
    environment,
    files_sha256,
    now,
    result_path,
    run_key,
    save_result,
)
from cirbench.retrieval import rank_candidates, topk_chunked

TOP_K = 50
# Protocol options that say where data lives, not how it is scored: recorded, but kept out of the run key.
LOCATION_OPTIONS = frozenset({"root", "coco_root", "vg_root", "image_info", "images_root"})


@dataclass
class Skipped:
    """What ``--skip-missing`` left out; stored in every result (zeros when nothing was skipped)."""

    images_missing: int = 0
    queries_dropped: int = 0
    gallery_images_dropped: int = 0
    queries_target_missing: int = 0  # kept and scored, but their target left the gallery: certain misses
    first_missing: list[str] = field(default_factory=list)


@dataclass
class EvalOutput:
    metrics: dict[str, float]
    rankings: Rankings
    timings: dict[str, float]
    n_queries: int
    skipped: Skipped


def prepare_split(data: BenchmarkSplit, skip_missing: bool = False) -> tuple[BenchmarkSplit, Skipped]:
    """Fail on missing images (count, first paths, expected layout) or drop them and count what was dropped."""
    check = check_images(data.images.values())
    if not check.missing:
        return data, Skipped()
    if not skip_missing:
        layout = f" (layout: {data.layout})" if data.layout else ""
        raise DataError(
            f"{data.benchmark} {data.split}: {check.summary()}{layout}. Put the images where the layout expects "
            "them (see `cirbench data check`), or pass --skip-missing to evaluate without them "
            "(the dropped count is stored in the result)."
        )
    missing = {ref.key for ref in check.missing}
    parts, dropped_queries, dropped_gallery, unwinnable = [], 0, 0, 0
    for part in data.parts:
        keep = [
            q
            for q in part.queries
            if q.reference not in missing and not (q.candidates and any(c in missing for c in q.candidates))
        ]
        dropped_queries += len(part.queries) - len(keep)
        unwinnable += sum(1 for q in keep if q.gt and any(g in missing for g in q.gt))
        gallery = part.gallery
        if gallery is not None:
            gallery = [g for g in gallery if g not in missing]
            dropped_gallery += len(part.gallery) - len(gallery)
        parts.append(dataclasses.replace(part, queries=keep, gallery=gallery))
    images = {k: v for k, v in data.images.items() if k not in missing}
    skipped = Skipped(
        images_missing=len(missing),
        queries_dropped=dropped_queries,
        gallery_images_dropped=dropped_gallery,
        queries_target_missing=unwinnable,
        first_missing=[str(ref.path) for ref in check.missing[:5]],
    )
    return dataclasses.replace(data, parts=parts, images=images), skipped


def evaluate_method(
    method: Method,
    backbone: Backbone,
    data: BenchmarkSplit,
    benchmark: Benchmark,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    skip_missing: bool = False,
    use_cache: bool = True,
    top_k: int = TOP_K,
    progress: Callable[[str, int, int], None] | None = None,
) -> EvalOutput:
    """Encode (cached) images, build queries, rank, and score (when the split has labels)."""
    unknown = [p.name for p in data.parts if p.gallery is not None and not p.gallery]
    if unknown or data.protocol.get("gallery_known") is False:
        raise DataError(
            f"{data.benchmark} {data.split}: the gallery is unknown or empty (part {', '.join(unknown) or 'all'}); "
            "for CIRCO put COCO2017_unlabeled/annotations/image_info_unlabeled2017.json under --root "
            "(or pass -p image_info=PATH). Scoring a rankings file (`cirbench score`) does not need it."
        )
    data, skipped = prepare_split(data, skip_missing)
    refs = list(data.images.values())
    feats = encode_images(
        backbone,
        refs,
        preprocess=method.preprocess,
        batch_size=batch_size,
        num_workers=num_workers,
        use_cache=use_cache,
        progress=(lambda done, total: progress("images", done, total)) if progress else None,
    )
    timings = {"gallery_encode_s": feats.seconds, "gallery_from_cache": float(feats.from_cache)}
    query_s = rank_s = 0.0
    top: dict[str, list[str]] = {}
    scores: dict[str, list[float]] = {}
    subset: dict[str, list[str]] = {}
    device = backbone.device
    for part in data.parts:
        start = time.perf_counter()
        queries = _encode_part_queries(method, part, feats, data.benchmark, batch_size * 4, device).to(device)
        query_s += time.perf_counter() - start
        start = time.perf_counter()
        _rank_part(part, queries, feats, top_k, top, scores, subset, device)
        rank_s += time.perf_counter() - start
        if progress:
            progress("queries", len(top), len(data.queries))
    timings.update(query_encode_s=query_s, rank_s=rank_s)
    rankings = Rankings(top=top, subset=subset or None, scores=scores)
    metrics = benchmark.metrics(data, rankings) if data.has_labels else {}
    return EvalOutput(metrics, rankings, timings, len(data.queries), skipped)


def _encode_part_queries(
    method: Method, part: Part, feats, benchmark: str, batch: int, device: torch.device
) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for start in range(0, len(part.queries), batch):
            chunk = part.queries[start : start + batch]
            refs = feats.rows([q.reference for q in chunk]).to(device)
            out.append(method.encode_queries(chunk, refs, benchmark).float().cpu())
    if not out:
        return torch.zeros(0, feats.features.shape[1])
    return torch.cat(out)


def _rank_part(part, queries, feats, top_k, top, scores, subset, device) -> None:
    if part.gallery is None:
        for q, row in zip(part.queries, queries, strict=True):
            cands = F.normalize(feats.rows(list(q.candidates)).to(device), dim=-1)
            order = rank_candidates(row, cands)
            top[q.qid] = [q.candidates[i] for i in order]
            scores[q.qid] = [float(cands[i] @ row) for i in order]
        return
    gallery = F.normalize(feats.rows(part.gallery).to(device), dim=-1)
    position = {key: i for i, key in enumerate(part.gallery)}
    exclude = [position.get(q.reference) for q in part.queries] if part.remove_reference else None
    idx, vals = topk_chunked(queries, gallery, top_k, exclude=exclude)
    for q, row_idx, row_vals, row in zip(part.queries, idx.tolist(), vals.tolist(), queries, strict=True):
        top[q.qid] = [part.gallery[i] for i in row_idx]
        scores[q.qid] = [round(v, 6) for v in row_vals]
        if q.subset is not None:
            members = [m for m in q.subset if m in position]
            order = rank_candidates(row, gallery[[position[m] for m in members]])
            subset[q.qid] = [members[i] for i in order]


def run_fields(
    method: Method,
    backbone: Backbone,
    data: BenchmarkSplit,
    benchmark: Benchmark,
    skip_missing: bool,
) -> dict[str, Any]:
    """Everything that changes the numbers, and nothing else: the run key is its hash."""
    return {
        "method": method.info.name,
        "variant": method.info.variant,
        "method_config": method.eval_config(),
        "checkpoint_sha256": method.info.checkpoint_sha256,
        "backbone": backbone.model_key,
        "preprocess": method.preprocess,
        "benchmark": data.benchmark,
        "split": data.split,
        "layout": data.layout,
        "protocol_version": benchmark.protocol_version,
        "protocol": {k: v for k, v in data.protocol.items() if k not in LOCATION_OPTIONS},
        "annotations_sha256": files_sha256(data.annotation_files),
        "skip_missing": skip_missing,
        "missing_images_sha256": _missing_hash(data) if skip_missing else None,
    }


def _missing_hash(data: BenchmarkSplit) -> str:
    """Which images are missing (so adding them later gives a new run key instead of a stale reuse)."""
    import hashlib

    missing = sorted(ref.key for ref in check_images(data.images.values()).missing)
    return hashlib.sha256("\n".join(missing).encode()).hexdigest()[:16]


def result_record(
    fields: Mapping[str, Any],
    method: Method,
    backbone: Backbone,
    data: BenchmarkSplit,
    benchmark: Benchmark,
    output: EvalOutput,
    extra_timing: Mapping[str, Any] | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    info = method.info
    train_meta = info.train_meta or {}
    return {
        "schema_version": SCHEMA_VERSION,
        "run_key": run_key(fields),
        "created_at": now(),
        "source": "run",
        "method": {
            "name": info.name,
            "variant": info.variant,
            "config": method.eval_config(),
            "checkpoint": info.checkpoint,
            "checkpoint_sha256": info.checkpoint_sha256,
            "training_data": info.training_data,
            "zero_shot": info.zero_shot,
            "train_meta": info.train_meta,
        },
        "backbone": {"id": backbone.id, "weights_id": backbone.weights_id, "quick_gelu": backbone.quick_gelu},
        "benchmark": {
            "name": data.benchmark,
            "split": data.split,
            "protocol_version": benchmark.protocol_version,
            "protocol": data.protocol,
            "preprocess": method.preprocess,
            "layout": data.layout,
            "gallery_size": data.gallery_size,
            "annotations_sha256": fields["annotations_sha256"],
        },
        "metrics": {k: round(float(v), 6) for k, v in output.metrics.items()},
        "main_metric": benchmark.main_metric,
        "n_queries": output.n_queries,
        "skipped": dataclasses.asdict(output.skipped),
        "timing": {
            **{k: round(v, 4) for k, v in output.timings.items()},
            **(extra_timing or {}),
            "train_s": train_meta.get("wall_time_s"),
            "train_device": train_meta.get("device_type"),
            "train_device_count": train_meta.get("device_count"),
        },
        "run_settings": {"batch_size": batch_size, "dtype": str(backbone.dtype)},
        "env": environment(str(backbone.device)),
    }


def rankings_record(rankings: Rankings) -> dict[str, Any]:
    record: dict[str, Any] = {"top": rankings.top}
    if rankings.subset:
        record["subset"] = rankings.subset
    if rankings.scores:
        record["scores"] = rankings.scores
    return record


def run_and_save(
    method: Method,
    backbone: Backbone,
    data: BenchmarkSplit,
    benchmark: Benchmark,
    results_dir: Path,
    *,
    overwrite: bool = False,
    skip_missing: bool = False,
    batch_size: int = 64,
    num_workers: int = 0,
    use_cache: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[dict[str, Any], Path, bool]:
    """Evaluate and write the result (reusing an existing one unless ``overwrite``); returns (result, path, reused)."""
    from cirbench.results import load_result

    fields = run_fields(method, backbone, data, benchmark, skip_missing)
    key = run_key(fields)
    path = result_path(results_dir, data.benchmark, data.split, method.info.name, backbone.id, key)
    if path.is_file() and not overwrite:
        return load_result(path), path, True
    start = time.perf_counter()
    output = evaluate_method(
        method,
        backbone,
        data,
        benchmark,
        batch_size=batch_size,
        num_workers=num_workers,
        skip_missing=skip_missing,
        use_cache=use_cache,
        progress=progress,
    )
    extra = {"total_s": round(time.perf_counter() - start, 4)}
    record = result_record(fields, method, backbone, data, benchmark, output, extra, batch_size)
    save_result(path, record, rankings_record(output.rankings))
    record["_path"] = str(path)
    return record, path, False
