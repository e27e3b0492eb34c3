"""The computation of one evaluation: image features (cached), query features, rankings, official metrics.

No files are written here except the feature cache; the caller decides what becomes a result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cirbench.backbones import Backbone
from cirbench.benchmarks.base import Benchmark, BenchmarkSplit, Part, Rankings
from cirbench.features import FeatureSet, encode_images
from cirbench.methods.base import Method
from cirbench.retrieval import rank_candidates, topk_chunked

TOP_K = 50
Progress = Callable[[str, int, int], None]


@dataclass
class EngineOutput:
    metrics: dict[str, float]
    rankings: Rankings
    timings: dict[str, float]
    n_queries: int
    texts_with_placeholder: int | None  # queries whose text holds the method's placeholder character


def run_engine(
    method: Method,
    backbone: Backbone,
    data: BenchmarkSplit,
    benchmark: Benchmark,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    use_cache: bool = True,
    top_k: int = TOP_K,
    progress: Progress | None = None,
    images_id: str | None = None,
) -> EngineOutput:
    """Encode (cached) images, build queries, rank, and score (when the split has labels)."""
    feats = encode_images(
        backbone,
        list(data.images.values()),
        preprocess=method.preprocess,
        batch_size=batch_size,
        num_workers=num_workers,
        use_cache=use_cache,
        progress=(lambda done, total: progress("images", done, total)) if progress else None,
        open_image=benchmark.open_image,
        reader=benchmark.image_reader_id,
        images_id=images_id,
    )
    timings = {"gallery_encode_s": feats.seconds, "gallery_from_cache": float(feats.from_cache)}
    query_s = rank_s = 0.0
    placeholder = getattr(method, "placeholder", None)
    with_placeholder = 0
    top: dict[str, list[str]] = {}
    scores: dict[str, list[float]] = {}
    subset: dict[str, list[str]] = {}
    device = backbone.device
    for part in data.parts:
        start = time.perf_counter()
        texts = [benchmark.query_texts(q, method.caption_join) for q in part.queries]
        if placeholder:
            with_placeholder += sum(any(placeholder in t for t in variants) for variants in texts)
        queries = _encode_part_queries(method, part, texts, feats, batch_size * 4, device).to(device)
        query_s += time.perf_counter() - start
        start = time.perf_counter()
        _rank_part(part, queries, feats, top_k, top, scores, subset, device)
        rank_s += time.perf_counter() - start
        if progress:
            progress("queries", len(top), len(data.queries))
    timings.update(query_encode_s=query_s, rank_s=rank_s)
    rankings = Rankings(top=top, subset=subset or None, scores=scores)
    metrics = benchmark.metrics(data, rankings) if data.has_labels else {}
    return EngineOutput(metrics, rankings, timings, len(data.queries), with_placeholder if placeholder else None)


def _encode_part_queries(
    method: Method, part: Part, texts: list[list[str]], feats: FeatureSet, batch: int, device: torch.device
) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for start in range(0, len(part.queries), batch):
            chunk = part.queries[start : start + batch]
            refs = feats.rows([q.reference for q in chunk]).to(device)
            out.append(method.encode_queries(chunk, texts[start : start + batch], refs).float().cpu())
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
