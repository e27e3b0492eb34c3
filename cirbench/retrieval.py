"""From features to rankings: chunked top-K over a global gallery, subset and per-query rankings.

Cosine similarity of L2-normalised features. The full score matrix is never materialised: queries are scored
in chunks and only the top-K of each chunk is kept, so a CIRCO-size case (800 x 123,403 x 768) fits in a few
hundred MB. The reference is excluded by masking its score to -inf before top-K (equivalent to deleting it
from the ranked row, as SEARLE does), so K results remain. Every score is checked to be finite before ranking
(``cirbench.finite``: a NaN sorts as the best score and would give a normal-looking ranking).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
