"""The computation of one evaluation: image features (cached), query features, rankings, official metrics.

No files are written here except the feature cache; the caller decides what becomes a result. One ranking path
serves every method and benchmark: a part's queries are scored through ``_Scorer`` (one query embedding against
the normalised gallery, or a method's fusion of its image and text similarity matrices), split-wide galleries are
ranked with the reference masked, a block of gallery rows at a time (``retrieval.topk_streamed`` for one embedding
or fused scores, with a second pass, ``retrieval.count_above``, when the benchmark ``needs_positive_ranks``; or a
faiss index through ``search.search_gallery``), per-query candidate lists and CIRR subsets by the same scores.
The gallery is encoded by the shared backbone or the method's own encoder (whatever is passed as ``backbone``:
``encoders.GalleryEncoder``); a method whose entry consumes ``reference_images`` gets the reference images, opened
by the benchmark's reader, instead of their features. Under torchrun the images and queries are encoded in shards
(``evaluation.distributed``), every rank ranks its shard of the gallery (``evaluation.sharded``), and rank 0 merges
and scores.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cirbench.benchmarks.base import Benchmark, BenchmarkSplit, Part, Rankings
from cirbench.benchmarks.ranks import RankingsWithPositives
from cirbench.decoding import DeviceDecoder
from cirbench.encoders import GalleryEncoder
from cirbench.errors import SearchIndexError
from cirbench.evaluation.distributed import SINGLE, Group, broadcast, encode_images_sharded, encode_queries_sharded
from cirbench.evaluation.sharded import gather_rows, rank_sharded
from cirbench.feature_blocks import GalleryRows
from cirbench.features import FeatureSet, encode_images
from cirbench.finite import require_finite_features, require_finite_tensor
from cirbench.methods.base import Method, QueryInput
from cirbench.retrieval import clipped_k, count_above, product, rank_candidate_scores, topk_streamed
from cirbench.search import EXACT, IndexSpec, search_gallery

TOP_K = 50
Progress = Callable[[str, int, int], None]


@dataclass
class EngineOutput:
    metrics: dict[str, float]
    rankings: Rankings
    timings: dict[str, float]
    n_queries: int
    texts_with_placeholder: int | None  # queries whose text holds the method's placeholder character
    index: dict[str, Any] = field(default_factory=dict)  # the gallery index, its parameters and measured recall@50
    decoded: dict[str, int] = field(default_factory=dict)  # images per decoding path ("device", "workers")


def run_engine(
    method: Method,
    backbone: GalleryEncoder,
    data: BenchmarkSplit,
    benchmark: Benchmark,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    use_cache: bool = True,
    top_k: int = TOP_K,
    progress: Progress | None = None,
    images_id: str | None = None,
    group: Group = SINGLE,
    index: IndexSpec = EXACT,
    decoder: DeviceDecoder | None = None,
    inputs: QueryInput = "reference_features",
) -> EngineOutput | None:
    """Encode (cached) images, build queries, rank, and score (when the split has labels). Under torchrun every
    rank encodes its shards and only rank 0 gets the output (None on the others). ``decoder``: decode JPEGs on
    the device (``cirbench.decoding``); None: the CPU workers. ``inputs``: what the method's entry consumes."""
    method.check_queries(data.queries)  # a method that can tell early it cannot encode some query, before any image
    fused = method.fuses_scores
    positives: dict[str, list[int]] | None = {} if benchmark.wants_positive_ranks(data) else None
    if index.name != EXACT.name:
        check_index(index, data, fused=fused, full_ranking=positives is not None, sharded=group.enabled)
    common: dict[str, Any] = dict(
        preprocess=method.preprocess,
        batch_size=batch_size,
        num_workers=num_workers,
        use_cache=use_cache,
        progress=(lambda done, total: progress("images", done, total)) if progress and group.main else None,
        open_image=benchmark.open_image,
        reader=benchmark.image_reader_id,
        images_id=images_id,
        decoder=decoder,
    )
    refs = list(data.images.values())
    if group.enabled:
        feats = encode_images_sharded(group, backbone, refs, **common)
    else:
        feats = encode_images(backbone, refs, **common)
    require_finite_features(feats, backbone.id)
    timings = {"gallery_encode_s": feats.seconds, "gallery_from_cache": float(feats.from_cache)} if feats else {}
    query_s = rank_s = 0.0
    placeholder = method.placeholder
    references = ReferenceImages(data, benchmark) if inputs == "reference_images" else None
    with_placeholder = 0
    reference_rows = feats
    if group.enabled and references is None:  # rank 0 gets the references' rows, which it sends to the query slices
        reference_rows = gather_rows(group, feats, [q.reference for q in data.queries if q.reference in feats.index])
    top: dict[str, list[str]] = {}
    scores: dict[str, list[float]] = {}
    subset: dict[str, list[str]] = {}
    device = backbone.device
    searched: dict[str, Any] = {"params": dict(index.params)}
    for part in data.parts:
        start = time.perf_counter()
        texts = [benchmark.query_texts(q, method.caption_join) for q in part.queries]
        if placeholder:
            with_placeholder += sum(any(placeholder in t for t in variants) for variants in texts)
        encoded = _encode_part(method, part, texts, references or reference_rows, batch_size * 4, device, fused, group)
        if group.enabled:  # every rank ranks its shard of the gallery against every query
            encoded = broadcast(group, encoded)
        what = f"method {method.info.name} on {data.benchmark}/{data.split}"
        require_finite_tensor(encoded, f"query features of {what}", method.info.checkpoint)
        if fused:
            scorer = _Scorer(image=encoded[0].to(device), text=encoded[1].to(device), fuse=method.fuse, what=what)
        else:
            scorer = _Scorer(embed=encoded.to(device), what=what)
        query_s += time.perf_counter() - start
        start = time.perf_counter()
        _rank_part(part, scorer, feats, top_k, (top, scores, subset), positives, device, index, searched, group)
        rank_s += time.perf_counter() - start
        if progress:
            progress("queries", len(top), len(data.queries))
    if not group.main:
        return None
    timings.update(query_encode_s=query_s, rank_s=rank_s)
    if positives is not None:
        rankings: Rankings = RankingsWithPositives(top, subset or None, scores, positive_ranks=positives)
    else:
        rankings = Rankings(top=top, subset=subset or None, scores=scores)
    metrics = benchmark.metrics(data, rankings) if data.has_labels else {}
    output = EngineOutput(metrics, rankings, timings, len(data.queries), with_placeholder if placeholder else None)
    output.index = index_record(index, searched)
    output.decoded = dict(feats.decoded) if feats else {}
    return output


def check_index(
    index: IndexSpec, data: BenchmarkSplit, *, fused: bool, full_ranking: bool, sharded: bool = False
) -> None:
    """Refuse, before any image is encoded, a run an index cannot rank: it searches one query embedding against a
    split-wide gallery, while fused scores and full-ranking positions need every score."""
    why = None
    if sharded:
        why = "under torchrun only exact search is sharded (each rank would build its own faiss index of its shard)"
    elif fused:
        why = "the method fuses two similarity matrices, which no single index holds"
    elif full_ranking:
        why = f"{data.benchmark}'s metrics need every ground truth's position in the full ranking"
    elif not any(part.gallery for part in data.parts):
        why = f"{data.benchmark} ranks each query's own candidate list, so there is no gallery to index"
    if why:
        raise SearchIndexError(f"--index {index.name} cannot rank this run: {why}; use --index exact")


def index_record(index: IndexSpec, searched: dict[str, Any]) -> dict[str, Any]:
    """What the result stores about the index: name, parameters as built, and (approximate) recall@50 against
    exact search on the sampled queries."""
    record: dict[str, Any] = {"name": index.name, "params": searched.get("params", {})}
    if "build_s" in searched:
        record["build_s"] = round(searched["build_s"], 4)
    if searched.get("recall_total"):
        record["recall@50"] = round(searched["recall_hits"] / searched["recall_total"], 6)
        record["recall_queries"] = searched["recall_queries"]
    return record


class ReferenceImages:
    """The reference images of a split, opened by the benchmark's reader when a batch asks for them (never all at
    once): what a method whose entry consumes ``reference_images`` gets in place of feature rows."""

    def __init__(self, data: BenchmarkSplit, benchmark: Benchmark) -> None:
        self.images = data.images
        self.open_image = benchmark.open_image

    def rows(self, keys: list[str]) -> list[Any]:
        return [self.open_image(self.images[key]) for key in keys]


def _encode_part(method, part, texts, references, batch, device, fused, group) -> Any:
    """A part's query features (a tuple of image and text features for a fused method); ``references`` gives a
    batch's reference feature rows or images. Under torchrun each rank encodes a slice of the queries and rank 0
    gets them all (None on the other ranks); reference images are opened by each rank itself."""
    encode = _encode_part_modalities if fused else _encode_part_queries
    if not group.enabled:
        return encode(method, part, texts, references, batch, device)
    images = references if isinstance(references, ReferenceImages) else None

    def encode_slice(a: int, b: int, local: FeatureSet) -> Any:
        part_slice = dataclasses.replace(part, queries=part.queries[a:b])
        return encode(method, part_slice, texts[a:b], images or local, batch, device)

    pieces = encode_queries_sharded(
        group,
        [q.reference for q in part.queries],
        batch,
        None if images is not None else references,
        encode_slice,
        (lambda out: len(out[0])) if fused else len,
    )
    if pieces is None:
        return None
    if fused:
        return _cat([p[0] for p in pieces]), _cat([p[1] for p in pieces])
    return _cat(pieces)


def _cat(pieces: list[torch.Tensor]) -> torch.Tensor:
    """The ranks' query rows in order; a rank with no queries sends an empty piece whose width may be unknown."""
    return torch.cat([p for p in pieces if len(p)] or pieces[:1])


def _batch_references(references: FeatureSet | ReferenceImages, chunk: list[Any], device: torch.device) -> Any:
    rows = references.rows([q.reference for q in chunk])
    return rows.to(device) if isinstance(rows, torch.Tensor) else rows


def _encode_part_queries(method, part: Part, texts: list[list[str]], references, batch: int, device) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for start in range(0, len(part.queries), batch):
            chunk = part.queries[start : start + batch]
            refs = _batch_references(references, chunk, device)
            out.append(method.encode_queries(chunk, texts[start : start + batch], refs).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, _width(references))


def _width(references: FeatureSet | ReferenceImages) -> int:
    return references.features.shape[1] if isinstance(references, FeatureSet) else 0


def _rank_part(part, scorer, feats, top_k, out, positives, device, index: IndexSpec, searched: dict, group) -> None:
    """Rank one part (the one ranking path): its queries' own candidate lists, or its split-wide gallery with the
    reference masked, read a block of rows at a time (``topk_streamed``: one embedding or fused scores;
    ``search_gallery`` for a faiss index; a second pass counts every ground truth's full-ranking position when the
    benchmark needs them), then CIRR's subsets by the same scores. Under torchrun every rank scores the blocks of its
    shard (``evaluation.sharded``) and rank 0 gets the few rows that candidate lists and subsets need."""
    top, scores, subset = out
    if group.enabled:
        needed = [c for q in part.queries for c in (q.candidates if part.gallery is None else q.subset or ())]
        rows = gather_rows(group, feats, [key for key in needed if key in feats.index])
    else:
        rows = feats
    if part.gallery is None:
        for i, q in enumerate(part.queries if rows is not None else ()):
            cands = F.normalize(rows.rows(list(q.candidates)).to(device), dim=-1)
            values = scorer.one(i, cands)
            order = rank_candidate_scores(values, scorer.scores)
            top[q.qid] = [q.candidates[j] for j in order]
            scores[q.qid] = [float(values[j]) for j in order]
            if positives is not None:
                ranked = {key: r for r, key in enumerate(top[q.qid])}
                positives[q.qid] = sorted(ranked[g] for g in q.gt or () if g in ranked)
        return
    position = {key: i for i, key in enumerate(part.gallery)}
    exclude = [position.get(q.reference) for q in part.queries] if part.remove_reference else None
    n, k = len(part.queries), clipped_k(top_k, len(part.gallery), exclude)
    wanted = (
        [[position[g] for g in q.gt or () if g in position] for q in part.queries] if positives is not None else None
    )
    at = np.array([feats.index[key] for key in part.gallery], dtype=np.int64)
    ranks = None
    if group.enabled:
        found = rank_sharded(group, feats, at, scorer.block, n, k, exclude, wanted, device, scorer.scores)
        if found is None:
            return
        idx, vals, ranks = found
    elif scorer.embed is None or wanted is not None or index.name == EXACT.name:
        gallery = GalleryRows(feats.features, at, device)
        idx, vals, captured = topk_streamed(gallery, scorer.block, n, k, exclude, what=scorer.scores, capture=wanted)
        if wanted is not None:
            targets = [[(g, got[g]) for g in w] for w, got in zip(wanted, captured, strict=True)]
            ranks = [sorted(c) for c in count_above(gallery, scorer.block, n, targets, exclude)]
    else:
        idx, vals = _search(
            scorer.embed, GalleryRows(feats.features, at, device), part.gallery, k, exclude, index, searched
        )
    if ranks is not None:
        positives.update({q.qid: r for q, r in zip(part.queries, ranks, strict=True)})
    for i, (q, row_idx, row_vals) in enumerate(zip(part.queries, _as_lists(idx), _as_lists(vals), strict=True)):
        top[q.qid] = [part.gallery[j] for j in row_idx]
        scores[q.qid] = [round(v, 6) for v in row_vals]
        if q.subset is not None:
            members = [m for m in q.subset if m in position]
            candidates = F.normalize(rows.rows(members).to(device), dim=-1)
            subset[q.qid] = [members[j] for j in rank_candidate_scores(scorer.one(i, candidates), scorer.scores)]


def _as_lists(values: Any) -> list[list[Any]]:
    return values.tolist() if isinstance(values, torch.Tensor) else [list(row) for row in values]


def _search(queries, gallery, keys, top_k, exclude, index: IndexSpec, searched: dict) -> tuple[Any, Any]:
    """One embedding per query against a split-wide gallery through ``search_gallery``; parts that share a gallery
    (shapes' two wordings) build its index once, and what the index did is added to ``searched``."""
    same = searched.get("gallery") == keys
    found = search_gallery(queries, gallery, top_k, exclude, index, searched.get("built") if same else None)
    searched.update(gallery=keys, built=found.built)
    searched["params"] = {**searched["params"], **found.used}
    if index.name != EXACT.name:
        searched["build_s"] = searched.get("build_s", 0.0) + found.build_s
    searched["recall_hits"] = searched.get("recall_hits", 0) + found.recall_hits
    searched["recall_total"] = searched.get("recall_total", 0) + found.recall_total
    searched["recall_queries"] = searched.get("recall_queries", 0) + found.recall_queries
    return found.indices, found.scores


def _encode_part_modalities(method, part: Part, texts: list[list[str]], references, batch: int, device) -> Any:
    """Normalised (image, text) query features of a score-fusion method, in the chunks ``encode_queries`` gets."""
    images, words = [], []
    with torch.no_grad():
        for start in range(0, len(part.queries), batch):
            chunk = part.queries[start : start + batch]
            refs = _batch_references(references, chunk, device)
            image, text = method.encode_modalities(chunk, texts[start : start + batch], refs)
            images.append(image.float().cpu())
            words.append(text.float().cpu())
    if not images:
        return torch.zeros(0, _width(references)), torch.zeros(0, _width(references))
    return torch.cat(images), torch.cat(words)


@dataclass
class _Scorer:
    """Scores of a part's queries: one embedding (``embed``) or a fusion of image and text similarities."""

    embed: torch.Tensor | None = None
    image: torch.Tensor | None = None
    text: torch.Tensor | None = None
    fuse: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    what: str = "queries"  # whose scores these are (named when one is not finite)

    @property
    def scores(self) -> str:
        return f"scores of {self.what}" if self.embed is not None else f"fused scores of {self.what}"

    def block(self, start: int, stop: int, gallery: torch.Tensor) -> torch.Tensor:
        """Queries ``start:stop`` x ``gallery`` rows (the product ``topk_chunked`` computes)."""
        if self.embed is not None:
            return product(self.embed[start:stop], gallery)
        return self.fuse(product(self.image[start:stop], gallery), product(self.text[start:stop], gallery))

    def one(self, i: int, candidates: torch.Tensor) -> torch.Tensor:
        """Query ``i`` against its own candidate rows (the product ``rank_candidates`` computes)."""
        if self.embed is not None:
            return candidates @ self.embed[i]
        return self.fuse(candidates @ self.image[i], candidates @ self.text[i])
