"""One rank of a torchrun check of sharded exact search (run by tests/test_sharded_search.py, not collected).

Every rank builds the same synthetic gallery, keeps only the rows of its shard (cut off the block grid, so blocks
are borrowed), and ranks with ``evaluation.sharded``; rank 0 writes what it got to ``argv[1]`` (an ``.npz``).
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F

from cirbench.evaluation.distributed import Shard, joined
from cirbench.evaluation.sharded import gather_rows, rank_sharded
from cirbench.retrieval import clipped_k, product


def case(n: int, dim: int, queries: int, seed: int = 0):
    """The gallery (with exact duplicates, so scores tie), the queries' image and text parts, references, positives."""
    g = torch.Generator().manual_seed(seed)
    gallery = torch.randn(n, dim, generator=g)
    gallery[n // 2 : n // 2 + 50] = gallery[7]  # ties across the shards' border
    image = F.normalize(torch.randn(queries, dim, generator=g), dim=-1)
    text = F.normalize(torch.randn(queries, dim, generator=g), dim=-1)
    exclude = [int(i * 7919 % n) if i % 3 else None for i in range(queries)]
    wanted = [[7, n // 2 + 3, int(i * 104729 % n), exclude[i] or 0] for i in range(queries)]
    return gallery.numpy(), image, text, exclude, wanted


def main() -> None:
    out, n, dim, queries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    gallery, image, text, exclude, wanted = case(n, dim, queries)
    with joined("cpu") as (group, _):
        cut = n // 2 - 1001  # off the block grid: rank 0 borrows rank 1's first rows
        bounds = [(0, cut), (cut, n)] if group.world == 2 else [(0, n)]
        a, b = bounds[group.rank]
        shard = Shard([str(i) for i in range(n)], a, b, gallery[a:b].copy(), bounds)
        positions = np.arange(n, dtype=np.int64)
        k = clipped_k(50, n, exclude)
        found = {}
        for name, score in {
            "embed": lambda a, b, block: product(image[a:b], block),
            "fused": lambda a, b, block: product(image[a:b], block) + product(text[a:b], block),
        }.items():
            found[name] = rank_sharded(group, shard, positions, score, queries, k, exclude, wanted, "cpu", "scores")
        rows = gather_rows(group, shard, ["3", str(n - 2), str(cut)])
        if group.main:
            arrays = {f"{name}_{part}": found[name][i] for name in found for i, part in enumerate(("idx", "vals"))}
            arrays.update({f"{name}_ranks": np.array(found[name][2]) for name in found})
            np.savez(out, rows=rows.features, world=group.world, **arrays)


if __name__ == "__main__":
    main()
