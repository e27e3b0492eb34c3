"""From features to rankings: chunked top-K over a global gallery, subset and per-query rankings.

Cosine similarity of L2-normalised features. The full score matrix is never materialised: queries are scored
in chunks and only the top-K of each chunk is kept, so a CIRCO-size case (800 x 123,403 x 768) fits in a few
hundred MB. The reference is excluded by masking its score to -inf before top-K (equivalent to deleting it
from the ranked row, as SEARLE does), so K results remain. Every score is checked to be finite before ranking
(``cirbench.finite``: a NaN sorts as the best score and would give a normal-looking ranking).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import torch

from cirbench.finite import FiniteFlag, require_finite_tensor

SCORES = "ranking scores"  # what a non-finite score is called when the caller does not say whose


def topk_chunked(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    k: int,
    exclude: Sequence[int | None] | None = None,
    chunk_size: int = 256,
    what: str = SCORES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and scores of the top-``k`` gallery rows per query, best first.

    ``exclude[i]`` is a gallery index to drop from query i's ranking (CIRR reference removal) or None.
    Works on whatever device the tensors are on (GPU when present).
    """
    gallery_t = gallery.T

    def scores(start: int, stop: int) -> torch.Tensor:
        return queries[start:stop] @ gallery_t

    return topk_scored(scores, queries.shape[0], gallery.shape[0], k, exclude, chunk_size, what)


def rank_candidates(query: torch.Tensor, candidates: torch.Tensor, what: str = SCORES) -> list[int]:
    """Order of one query's candidate rows by descending score; ties keep candidate order (stable sort).

    This is cirbench's documented GeneCIS tie rule: the target (index 0) wins an exact tie.
    """
    return rank_candidate_scores(candidates @ query, what)


def subset_ranking(ranked_keys: Sequence[str], subset: Sequence[str]) -> list[str]:
    """Keep, in ranked order, only the keys of ``subset`` (CIRR Recall_subset)."""
    members = set(subset)
    return [key for key in ranked_keys if key in members]


def topk_scored(
    score_rows: Callable[[int, int], torch.Tensor],
    n_queries: int,
    n_gallery: int,
    k: int,
    exclude: Sequence[int | None] | None = None,
    chunk_size: int = 256,
    what: str = SCORES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``topk_chunked`` for any scoring: ``score_rows(start, stop)`` gives queries ``start:stop`` x the gallery.

    Used when a method fuses two similarity matrices instead of giving one query embedding; the chunking, the
    reference exclusion (score masked to -inf before top-K) and the clipping of ``k`` are those of ``topk_chunked``.
    """
    k = max(min(k, n_gallery - (1 if exclude is not None and any(e is not None for e in exclude) else 0)), 0)
    indices, scores, finite = [], [], FiniteFlag()
    for start in range(0, n_queries, chunk_size):
        sims = finite.add(score_rows(start, min(start + chunk_size, n_queries)))  # before the reference's -inf
        _mask(sims, exclude, start)
        top = torch.topk(sims, k, dim=1, largest=True, sorted=True)
        indices.append(top.indices)
        scores.append(top.values)
    finite.check(what)
    if not indices:
        return torch.zeros(0, k, dtype=torch.long), torch.zeros(0, k)
    return torch.cat(indices), torch.cat(scores)


def rank_with_positives(
    score_rows: Callable[[int, int], torch.Tensor],
    n_queries: int,
    n_gallery: int,
    k: int,
    positives: Sequence[Sequence[int]],
    exclude: Sequence[int | None] | None = None,
    chunk_size: int = 256,
    what: str = SCORES,
) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """Top-``k`` indices and scores, plus the 0-based position of every positive in the *full* ranking.

    For metrics over the whole ranking (FreeDom's mAP, true recall at any K) without storing it: each chunk is
    sorted once (stable, so equal scores keep gallery order) and the positives' positions are read off the
    inverse permutation. An excluded item ranks last and is never returned in the top ``k``.
    """
    k = max(min(k, n_gallery - (1 if exclude is not None and any(e is not None for e in exclude) else 0)), 0)
    indices, scores, ranks, finite = [], [], [], FiniteFlag()
    for start in range(0, n_queries, chunk_size):
        sims = finite.add(score_rows(start, min(start + chunk_size, n_queries)))
        _mask(sims, exclude, start)
        order = torch.sort(sims, dim=1, descending=True, stable=True).indices
        position = torch.empty_like(order)
        position.scatter_(1, order, torch.arange(n_gallery, device=order.device).expand_as(order))
        indices.append(order[:, :k])
        scores.append(torch.gather(sims, 1, order[:, :k]))
        for row, pos in enumerate(positives[start : start + sims.shape[0]]):
            ranks.append(sorted(position[row, list(pos)].tolist()) if pos else [])
    finite.check(what)
    if not indices:
        return torch.zeros(0, k, dtype=torch.long), torch.zeros(0, k), []
    return torch.cat(indices), torch.cat(scores), ranks


def rank_candidate_scores(scores: torch.Tensor, what: str = SCORES) -> list[int]:
    """Order of one query's candidates by descending score, ties in candidate order (as ``rank_candidates``)."""
    require_finite_tensor(scores, what)
    return torch.sort(scores, descending=True, stable=True).indices.tolist()


def _mask(sims: torch.Tensor, exclude: Sequence[int | None] | None, start: int) -> None:
    if exclude is None:
        return
    rows = [i for i, e in enumerate(exclude[start : start + sims.shape[0]]) if e is not None]
    if rows:
        sims[rows, [exclude[start + i] for i in rows]] = float("-inf")


# ------------------------------------------------------------------------------ streamed and sharded exact search

BLOCK_ROWS = 65536  # gallery rows scored at once when streaming: 192 MiB at 768 dims, whatever the gallery's size


def gallery_block_rows(rows: int | None = None) -> int:
    """``rows``, else ``CIRBENCH_BLOCK_ROWS``, else ``BLOCK_ROWS``: the gallery block, which fixes the shapes of the
    score products (so, like the batch size, it may move a last bit; one process and torchrun use the same)."""
    return rows or int(os.environ.get("CIRBENCH_BLOCK_ROWS") or BLOCK_ROWS)


class GalleryBlocks(Protocol):
    """A gallery read a block of rows at a time (``features.GalleryRows``: the memory-mapped cache; ``TensorBlocks``):
    ``blocks`` yields ``(start, stop, rows)`` with the rows L2-normalised, ``start`` counted from ``offset``."""

    offset: int

    def __len__(self) -> int: ...

    def blocks(self, block_rows: int | None = None) -> Iterator[tuple[int, int, torch.Tensor]]: ...


class TensorBlocks:
    """An in-memory normalised gallery (or one rank's shard of it, whose first row is global row ``offset``)."""

    def __init__(self, gallery: torch.Tensor, offset: int = 0) -> None:
        self.gallery, self.offset = gallery, offset

    def __len__(self) -> int:
        return self.gallery.shape[0]

    def blocks(self, block_rows: int | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
        step = gallery_block_rows(block_rows)
        for a in range(0, len(self), step):
            b = min(a + step, len(self))
            yield self.offset + a, self.offset + b, self.gallery[a:b]


def product(queries: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
    """``queries @ block.T``, the same bits whichever block of the gallery ``block`` is: a one-row block is padded to
    two, because BLAS computes a single column through another kernel (gemv) that rounds differently."""
    if block.shape[0] == 1:
        return (queries @ torch.cat([block, block]).T)[:, :1]
    return queries @ block.T


def clipped_k(k: int, n_gallery: int, exclude: Sequence[int | None] | None) -> int:
    """``k`` clipped as every top-K here clips it: never more than the gallery, less the reference when one is out."""
    return max(min(k, n_gallery - (1 if exclude is not None and any(e is not None for e in exclude) else 0)), 0)


def block_topk(sims: torch.Tensor, k: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of one score block with global indices (``offset`` + column), best first and, among equal scores,
    the lower gallery index first (``torch.topk`` alone leaves the order of ties, and which tie makes the cut, open)."""
    k = min(k, sims.shape[1])
    wide = min(k + 1, sims.shape[1])  # one more: a tie across the cut shows as the (k+1)-th equal to the k-th
    vals, idx = torch.topk(sims, wide, dim=1, largest=True, sorted=True)
    tied = (vals[:, k - 1] == vals[:, k]).nonzero().flatten().tolist() if 0 < k < wide else []
    vals, idx = vals[:, :k].contiguous(), idx[:, :k].contiguous()
    for row in tied:
        order = torch.sort(sims[row], descending=True, stable=True).indices[:k]  # a tie at the cut: lowest index
        idx[row], vals[row] = order, sims[row, order]
    return _by_score_then_index(idx + offset, vals)


def _by_score_then_index(idx: torch.Tensor, vals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    idx, perm = torch.sort(idx, dim=1)
    vals = torch.gather(vals, 1, perm)
    order = torch.sort(vals, dim=1, descending=True, stable=True).indices
    return torch.gather(idx, 1, order), torch.gather(vals, 1, order)


def merge_topk(parts: Sequence[tuple[torch.Tensor, torch.Tensor]], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of several ``(indices, scores)`` lists of the same queries (blocks, or the ranks' shards, in any
    order): best score first, then the lower gallery index, as one ranking of the whole gallery orders them."""
    idx, vals = _by_score_then_index(torch.cat([p[0] for p in parts], dim=1), torch.cat([p[1] for p in parts], dim=1))
    return idx[:, :k], vals[:, :k]


Score = Callable[[int, int, torch.Tensor], torch.Tensor]  # queries start:stop x a block of normalised gallery rows


def topk_streamed(
    gallery: GalleryBlocks,
    score: Score,
    n_queries: int,
    k: int,
    exclude: Sequence[int | None] | None = None,
    chunk_size: int = 256,
    what: str = SCORES,
    capture: Sequence[Sequence[int]] | None = None,
    block_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[dict[int, float]]]:
    """Exact top-``k`` (already clipped: ``clipped_k``) over a gallery read block by block: each block once, against
    every query chunk, merged into a running top-``k`` (memory: one block and its scores, not the gallery). Query
    chunks are those of ``topk_scored``, so every score is the same bits; ties go to the lower global index.
    ``exclude`` holds global indices (masked to -inf); ``capture[i]`` global indices whose scores are returned."""
    chunks = [(a, min(a + chunk_size, n_queries)) for a in range(0, n_queries, chunk_size)]
    running: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(chunks)
    captured: list[dict[int, float]] = [{} for _ in range(n_queries)]
    finite = FiniteFlag()
    for a, b, block in gallery.blocks(block_rows):
        for c, (qa, qb) in enumerate(chunks):
            sims = finite.add(score(qa, qb, block))
            _mask_block(sims, exclude, qa, a, b)
            for row, wanted in enumerate(capture[qa:qb] if capture is not None else ()):
                for g in wanted:
                    if a <= g < b:
                        captured[qa + row][g] = float(sims[row, g - a])
            top = block_topk(sims, k, a)
            running[c] = top if running[c] is None else merge_topk([running[c], top], k)
    finite.check(what)
    empty = (torch.zeros(0, 0, dtype=torch.long), torch.zeros(0, 0))
    if not chunks:
        return torch.zeros(0, k, dtype=torch.long), torch.zeros(0, k), captured
    tops = [
        r if r is not None else (empty[0].new_zeros(qb - qa, 0), empty[1].new_zeros(qb - qa, 0))
        for r, (qa, qb) in zip(running, chunks, strict=True)
    ]
    return torch.cat([t[0] for t in tops]), torch.cat([t[1] for t in tops]), captured


def count_above(
    gallery: GalleryBlocks,
    score: Score,
    n_queries: int,
    targets: Sequence[Sequence[tuple[int, float]]],
    exclude: Sequence[int | None] | None = None,
    chunk_size: int = 256,
    block_rows: int | None = None,
) -> list[list[int]]:
    """Per query, per ``(global index, score)`` target, how many of these gallery rows rank above it in the full
    ranking (a higher score, or the same score at a lower index: the stable sort of ``rank_with_positives``). Summed
    over every shard of a gallery this is the target's exact 0-based position."""
    counts = [[0] * len(t) for t in targets]
    for a, b, block in gallery.blocks(block_rows):
        for qa in range(0, n_queries, chunk_size):
            qb = min(qa + chunk_size, n_queries)
            if not any(targets[qa:qb]):
                continue
            sims = score(qa, qb, block)
            _mask_block(sims, exclude, qa, a, b)
            columns = torch.arange(a, b, device=sims.device)
            for row, wanted in enumerate(targets[qa:qb]):
                if not wanted:
                    continue
                g = torch.tensor([t[0] for t in wanted], device=sims.device)[:, None]
                s = torch.tensor([t[1] for t in wanted], dtype=sims.dtype, device=sims.device)[:, None]
                line = sims[row][None, :]
                above = ((line > s) | ((line == s) & (columns[None, :] < g))).sum(1).tolist()
                counts[qa + row] = [c + n for c, n in zip(counts[qa + row], above, strict=True)]
    return counts


def _mask_block(sims: torch.Tensor, exclude: Sequence[int | None] | None, start: int, a: int, b: int) -> None:
    """Mask, in the block of global columns ``a:b``, each query's excluded gallery index (the reference)."""
    if exclude is None:
        return
    rows = [i for i, e in enumerate(exclude[start : start + sims.shape[0]]) if e is not None and a <= e < b]
    if rows:
        sims[rows, [exclude[start + i] - a for i in rows]] = float("-inf")
