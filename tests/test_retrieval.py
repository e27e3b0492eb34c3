"""Chunked top-K equals a full sort; reference exclusion; stable candidate ranking; subset filtering."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cirbench.retrieval import rank_candidates, subset_ranking, topk_chunked


def _features(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_topk_chunked_equals_full_argsort_with_reference_removed():
    queries, gallery = _features(37, 16, 0), _features(101, 16, 1)
    exclude = [i % 101 if i % 3 else None for i in range(37)]
    idx, scores = topk_chunked(queries, gallery, k=50, exclude=exclude, chunk_size=8)
    full = queries @ gallery.T
    for i in range(37):
        order = [j for j in torch.argsort(full[i], descending=True).tolist() if j != exclude[i]]
        assert idx[i].tolist() == order[:50]
        assert exclude[i] not in idx[i].tolist()
        torch.testing.assert_close(scores[i], full[i, order[:50]])


def test_topk_k_larger_than_gallery_is_clipped():
    idx, _ = topk_chunked(_features(2, 8, 0), _features(5, 8, 1), k=50, exclude=[0, None])
    assert idx.shape == (2, 4)


def test_rank_candidates_is_stable_on_ties():
    query = torch.tensor([1.0, 0.0])
    # candidates 0 and 2 are identical: the earlier one (the target at index 0) ranks first.
    candidates = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    assert rank_candidates(query, candidates) == [1, 0, 2, 3]


def test_subset_ranking_keeps_ranked_order():
    assert subset_ranking(["e", "a", "x", "c", "b"], ["a", "b", "c"]) == ["a", "c", "b"]
