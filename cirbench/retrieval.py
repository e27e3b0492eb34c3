"""From features to rankings: chunked top-K over a global gallery, subset and per-query rankings.

Cosine similarity of L2-normalised features. The full score matrix is never materialised: queries are scored
in chunks and only the top-K of each chunk is kept, so a CIRCO-size case (800 x 123,403 x 768) fits in a few
hundred MB. The reference is excluded by masking its score to -inf before top-K (equivalent to deleting it
from the ranked row, as SEARLE does), so K results remain.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def topk_chunked(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    k: int,
    exclude: Sequence[int | None] | None = None,
    chunk_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and scores of the top-``k`` gallery rows per query, best first.

    ``exclude[i]`` is a gallery index to drop from query i's ranking (CIRR reference removal) or None.
    Works on whatever device the tensors are on (GPU when present).
    """
    k = min(k, gallery.shape[0] - (1 if exclude is not None and any(e is not None for e in exclude) else 0))
    k = max(k, 0)
    indices, scores = [], []
    gallery_t = gallery.T
    for start in range(0, queries.shape[0], chunk_size):
        sims = queries[start : start + chunk_size] @ gallery_t
        if exclude is not None:
            rows = [i for i, e in enumerate(exclude[start : start + chunk_size]) if e is not None]
            if rows:
                cols = [exclude[start + i] for i in rows]
                sims[rows, cols] = float("-inf")
        top = torch.topk(sims, k, dim=1, largest=True, sorted=True)
        indices.append(top.indices)
        scores.append(top.values)
    if not indices:
        return torch.zeros(0, k, dtype=torch.long), torch.zeros(0, k)
    return torch.cat(indices), torch.cat(scores)


def rank_candidates(query: torch.Tensor, candidates: torch.Tensor) -> list[int]:
    """Order of one query's candidate rows by descending score; ties keep candidate order (stable sort).

    This is cirbench's documented GeneCIS tie rule: the target (index 0) wins an exact tie.
    """
    scores = candidates @ query
    return torch.sort(scores, descending=True, stable=True).indices.tolist()


def subset_ranking(ranked_keys: Sequence[str], subset: Sequence[str]) -> list[str]:
    """Keep, in ranked order, only the keys of ``subset`` (CIRR Recall_subset)."""
    members = set(subset)
    return [key for key in ranked_keys if key in members]
