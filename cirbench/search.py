"""Which index ranks a split-wide gallery: cirbench's exact chunked top-K (the default) or a faiss index.

Why an index: exact search costs queries x gallery products, which a web-size gallery (millions of images) makes
the slowest step. ``faiss-flat`` is brute force too, in faiss's kernels (the same ranking up to ties and float
rounding, so like the batch size it stays out of the run key). ``faiss-ivf``, ``faiss-hnsw`` and the compressed
``faiss-ivfpq`` (product-quantised codes in IVF lists) and ``faiss-sq8`` (8-bit scalars) are approximate: their name
and parameters enter the run key, and every run measures their recall@50 against exact search on an evenly spaced
sample of at most ``recall_sample`` queries per part, stored in the result. Exact search reads the gallery a block
at a time (``retrieval.topk_streamed``); the compressed indexes train on a sample and are filled a block at a time,
so neither holds the float32 gallery; the other faiss indexes read it whole, as faiss keeps it.

The benchmark's rules stay the caller's: the reference is removed the same way (one more neighbour is searched and
the reference dropped, as masking its score does), while candidate lists and CIRR subsets are always ranked exactly
by the engine. faiss is optional (``pip install 'cirbench[scale]'``) and imported only when an index needs it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cirbench.errors import SearchIndexError
from cirbench.finite import require_finite_tensor
from cirbench.options import Option, keyed_options, parse_options
from cirbench.retrieval import GalleryBlocks, TensorBlocks, clipped_k, product, topk_streamed

RECALL_K = 50
TRAIN_PER_LIST = 64  # IVF k-means sees at most this many gallery rows per list (faiss's default is 256)
_SAMPLE = Option("recall_sample", "int", 1000, "queries per part checked against exact search", minimum=0, keyed=False)
INDEX_OPTIONS: dict[str, tuple[Option, ...]] = {
    "exact": (),
    "faiss-flat": (),
    "faiss-ivf": (
        Option("nlist", "int", 0, "inverted lists (0: 4 x sqrt(gallery), at most gallery / 39)", minimum=0),
        Option("nprobe", "int", 32, "lists visited per query", minimum=1),
        _SAMPLE,
    ),
    "faiss-hnsw": (
        Option("M", "int", 32, "graph neighbours per node", minimum=2),
        Option("ef_construction", "int", 80, "candidate list while building", minimum=1),
        Option("ef_search", "int", 128, "candidate list while searching (at least k + 1 is used)", minimum=1),
        _SAMPLE,
    ),
    "faiss-ivfpq": (
        Option("nlist", "int", 0, "inverted lists (0: 4 x sqrt(gallery), at most gallery / 39)", minimum=0),
        Option("nprobe", "int", 32, "lists visited per query", minimum=1),
        Option("m", "int", 0, "product-quantiser sub-vectors (0: dim / 8; must divide dim)", minimum=0),
        Option("nbits", "int", 8, "bits per sub-vector code", minimum=1),
        _SAMPLE,
    ),
    "faiss-sq8": (_SAMPLE,),
}
APPROXIMATE = frozenset({"faiss-ivf", "faiss-hnsw", "faiss-ivfpq", "faiss-sq8"})
COMPRESSED = frozenset({"faiss-ivfpq", "faiss-sq8"})  # trained on a sample and filled a block at a time
TRAIN_SAMPLE = 100_000  # rows a compressed index trains on (evenly spaced over the gallery)


@dataclass(frozen=True)
class IndexSpec:
    """A validated index choice: its name and typed parameters."""

    name: str = "exact"
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def approximate(self) -> bool:
        return self.name in APPROXIMATE

    @property
    def key(self) -> dict[str, Any] | None:
        """What the run key hashes: nothing for an exact search, name and keyed parameters for an approximate one."""
        if not self.approximate:
            return None
        return {"name": self.name, "params": keyed_options(INDEX_OPTIONS[self.name], self.params)}

    def label(self) -> str:
        """``faiss-ivf(nlist=0,nprobe=32)``: the name and the parameters that change its numbers."""
        params = keyed_options(INDEX_OPTIONS[self.name], self.params)
        return self.name + (f"({','.join(f'{k}={v}' for k, v in params.items())})" if params else "")


EXACT = IndexSpec()


def parse_index(name: str | None, params: Mapping[str, Any] | None = None) -> IndexSpec:
    """``--index NAME`` with ``--index-param KEY=VALUE`` pairs -> an ``IndexSpec``; one-line errors otherwise."""
    name = (name or "exact").strip()
    if name not in INDEX_OPTIONS:
        raise SearchIndexError(f"--index {name!r} is unknown; choose one of {', '.join(INDEX_OPTIONS)}")
    spec = IndexSpec(name, parse_options(INDEX_OPTIONS[name], params, f"--index {name}"))
    nlist, nprobe = spec.params.get("nlist"), spec.params.get("nprobe")
    if nlist and "nprobe" in (params or {}) and nprobe > nlist:  # faiss would visit nlist lists, not the nprobe keyed
        raise SearchIndexError(
            f"--index {name}: nprobe={nprobe} is more than nlist={nlist} (a query visits at most every list); "
            f"give nprobe <= {nlist}"
        )
    if name != "exact":
        require_faiss(name)
    return spec


def require_faiss(name: str) -> Any:
    try:
        import faiss
    except ImportError as error:
        raise SearchIndexError(
            f"--index {name} needs faiss: pip install 'cirbench[scale]' (faiss-cpu), or use --index exact"
        ) from error
    return faiss


@dataclass
class Searched:
    """Top-k gallery positions and scores per query (best first), and the recall sample of an approximate index."""

    indices: list[list[int]]
    scores: list[list[float]]
    recall_hits: int = 0  # exact top-50 items the index also returned, over the sampled queries
    recall_total: int = 0
    recall_queries: int = 0
    build_s: float = 0.0
    used: dict[str, Any] = field(default_factory=dict)  # resolved parameters (nlist when it was 0)
    built: Any = None  # the faiss index, for another part that searches the same gallery


def search_gallery(
    queries: torch.Tensor,
    gallery: torch.Tensor | GalleryBlocks,
    k: int,
    exclude: Sequence[int | None] | None,
    index: IndexSpec = EXACT,
    built: tuple[Any, dict[str, Any]] | None = None,
) -> Searched:
    """The one place a split-wide gallery is searched: the top-``k`` rows of L2-normalised ``gallery`` per query,
    ``exclude[i]`` (the reference) never among them. ``built``: the ``(index, parameters)`` a previous search of the
    same gallery returned in ``Searched.built`` (parts that share a gallery build it once)."""
    blocks = gallery if not isinstance(gallery, torch.Tensor) else TensorBlocks(gallery)
    if index.name == "exact":
        idx, vals, _ = topk_streamed(
            blocks, _product(queries), len(queries), clipped_k(k, len(blocks), exclude), exclude
        )
        return Searched(idx.tolist(), vals.tolist())
    xq = np.ascontiguousarray(queries.detach().float().cpu().numpy())
    require_finite_tensor([queries], f"query features searched with --index {index.name}")  # faiss never checks
    start = time.perf_counter()
    reused = built is not None
    if built is None and index.name in COMPRESSED:
        built = build_compressed(blocks, index, f"features searched with --index {index.name}")
    elif built is None:
        whole = gallery if isinstance(gallery, torch.Tensor) else gallery.whole()
        require_finite_tensor([whole], f"features searched with --index {index.name}")
        built = build_index(np.ascontiguousarray(whole.detach().float().cpu().numpy()), index)
    build_s = 0.0 if reused else time.perf_counter() - start
    out = Searched(*faiss_topk(built[0], xq, k, exclude, len(blocks)), build_s=build_s, used=built[1], built=built)
    sample = index.params.get("recall_sample", 0)
    if index.approximate and sample and len(xq):
        rows = sorted(set(np.linspace(0, len(xq) - 1, min(sample, len(xq))).round().astype(int).tolist()))
        sub_exclude = [exclude[r] for r in rows] if exclude is not None else None
        wanted = clipped_k(min(k, RECALL_K), len(blocks), sub_exclude)
        exact, _, _ = topk_streamed(blocks, _product(queries[rows]), len(rows), wanted, sub_exclude)
        for row, truth in zip(rows, exact.tolist(), strict=True):
            out.recall_hits += len(set(truth) & set(out.indices[row][:RECALL_K]))
            out.recall_total += len(truth)
        out.recall_queries = len(rows)
    return out


def build_index(gallery: np.ndarray, index: IndexSpec) -> tuple[Any, dict[str, Any]]:
    """A faiss inner-product index over ``gallery`` (float32 rows), and the parameters it was built with."""
    faiss = require_faiss(index.name)
    n, dim = gallery.shape
    params = dict(index.params)
    if index.name == "faiss-flat":
        built = faiss.IndexFlatIP(dim)
    elif index.name == "faiss-ivf":
        nlist = params["nlist"] or max(1, min(round(4 * math.sqrt(n)), n // 39))
        if nlist > n:
            raise SearchIndexError(f"--index-param nlist={nlist} is more than the {n} gallery images; give fewer")
        quantizer = faiss.IndexFlatIP(dim)
        built = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        built.cp.max_points_per_centroid = TRAIN_PER_LIST  # k-means on a seeded sample: minutes, not hours
        built.train(gallery)
        built.nprobe = min(params["nprobe"], nlist)
        params.update(nlist=nlist, nprobe=built.nprobe)
    else:
        built = faiss.IndexHNSWFlat(dim, params["M"], faiss.METRIC_INNER_PRODUCT)
        built.hnsw.efConstruction = params["ef_construction"]
        built.hnsw.efSearch = params["ef_search"]
    built.add(gallery)
    return built, params


def _product(queries: torch.Tensor) -> Any:
    return lambda a, b, block: product(queries[a:b], block)


def build_compressed(gallery: GalleryBlocks, index: IndexSpec, what: str) -> tuple[Any, dict[str, Any]]:
    """IVF-PQ or 8-bit scalar-quantised storage: trained on an evenly spaced sample of at most ``TRAIN_SAMPLE``
    rows, then filled a block at a time, so only the codes (a few bytes a row) stay in memory."""
    faiss = require_faiss(index.name)
    n, params = len(gallery), dict(index.params)
    sample_at = set(np.linspace(0, n - 1, min(n, TRAIN_SAMPLE)).round().astype(int).tolist()) if n else set()
    sample, dim = [], 0
    for a, b, block in gallery.blocks():
        require_finite_tensor([block], what)
        dim = block.shape[1]
        take = [i - a for i in range(a, b) if i in sample_at]
        sample.append(block[take].float().cpu().numpy())
    train = np.ascontiguousarray(np.concatenate(sample)) if sample else np.zeros((0, dim), np.float32)
    if index.name == "faiss-sq8":
        built = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    else:
        nlist = params["nlist"] or max(1, min(round(4 * math.sqrt(n)), n // 39))
        m = params["m"] or max(1, dim // 8)
        if nlist > n or dim % m or n < 2 ** params["nbits"]:
            raise SearchIndexError(
                f"--index faiss-ivfpq cannot index {n} rows of {dim} dims with nlist={nlist}, m={m}, "
                f"nbits={params['nbits']}: nlist must be at most the rows, m must divide {dim}, and the rows at least "
                f"2^nbits; give other --index-param values"
            )
        built = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, m, params["nbits"], faiss.METRIC_INNER_PRODUCT)
        built.cp.max_points_per_centroid = TRAIN_PER_LIST
        params.update(nlist=nlist, m=m)
    built.train(train)
    for _, _, block in gallery.blocks():
        built.add(np.ascontiguousarray(block.float().cpu().numpy()))
    if hasattr(built, "nprobe"):
        built.nprobe = min(params["nprobe"], params["nlist"])
        params["nprobe"] = built.nprobe
    return built, params


def faiss_topk(
    built: Any, queries: np.ndarray, k: int, exclude: Sequence[int | None] | None, n_gallery: int
) -> tuple[list[list[int]], list[list[float]]]:
    """Top-``k`` of a built index with ``exclude`` dropped (``k`` clipped as ``topk_chunked`` clips it); an
    approximate index may return fewer rows when the lists it visits hold fewer images."""
    k = max(min(k, n_gallery - (1 if exclude is not None and any(e is not None for e in exclude) else 0)), 0)
    wanted = min(k + (1 if exclude is not None else 0), n_gallery)
    if hasattr(built, "hnsw"):
        built.hnsw.efSearch = max(built.hnsw.efSearch, wanted)
    if not len(queries) or wanted == 0:
        return [[] for _ in range(len(queries))], [[] for _ in range(len(queries))]
    scores, indices = built.search(queries, wanted)
    out_idx, out_scores = [], []
    for i, (row_idx, row_scores) in enumerate(zip(indices.tolist(), scores.tolist(), strict=True)):
        drop = exclude[i] if exclude is not None else None
        kept = [(j, s) for j, s in zip(row_idx, row_scores, strict=True) if j >= 0 and j != drop][:k]
        out_idx.append([j for j, _ in kept])
        out_scores.append([s for _, s in kept])
    return out_idx, out_scores
