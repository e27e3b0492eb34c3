"""Sharded exact search under torchrun: each rank keeps the gallery rows it encoded and ranks every query there.

Why: gathering every feature to rank 0 caps the gallery at what one process holds (about 4M x 768 on 24 GiB).
Here a rank holds its shard plus at most a block of rows borrowed from a neighbour, and sends rank 0 only each
query's top-k with global gallery ids. The numbers are one process's, bit for bit:

- **The same products.** The gallery is scored in blocks of ``retrieval.gallery_block_rows()`` items counted from
  item 0, on one process as on many, and queries in the same chunks, so every score comes from a product of the same
  shapes. A block belongs to the rank that holds its first row; the block's rows that another rank encoded are sent
  to it once (shards are contiguous, so that is under one block per rank).
- **The same order.** Every top-k, per block, per rank and merged, orders by score, then by global gallery index;
  the reference is masked to -inf in its block, as before.
- **Full-ranking positions** (FreeDom, Pic2Word): a first pass returns every positive's score from the block that
  holds it; rank 0 sends them to all ranks; a second pass counts, per positive, the items of each rank's blocks that
  rank above it (a higher score, or the same score at a lower index). The sum over ranks is the exact position.
- **Candidate lists and CIRR subsets** need a few rows per query: rank 0 receives just those rows and ranks them as
  one process does; so does query encoding, for the reference images' features.

A rank with a finished cache entry on rank 0 is the degenerate case: rank 0 holds every row (a memory map, read a
block at a time), the others none.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from cirbench.evaluation.distributed import Group, Shard, broadcast, broadcast_from, gather
from cirbench.feature_blocks import normalised
from cirbench.features import FeatureSet
from cirbench.retrieval import Score, count_above, gallery_block_rows, merge_topk, topk_streamed


def gather_rows(group: Group, shard: Shard, keys: Sequence[str]) -> FeatureSet | None:
    """The feature rows of ``keys`` (each once) on rank 0, None elsewhere: each rank sends the ones it holds."""
    unique = list(dict.fromkeys(keys))
    rows = np.array([shard.index[k] for k in unique], dtype=np.int64)
    mine = (rows >= shard.start) & (rows < shard.stop)
    pieces = gather(group, (np.nonzero(mine)[0], shard.local(rows[mine])))
    if pieces is None:
        return None
    width = shard.features.shape[1]
    out = np.zeros((len(unique), width), np.float32)
    for where, values in pieces:
        out[where] = values
    return FeatureSet(unique, out, 0.0, True)


class ShardBlocks:
    """The gallery blocks one rank scores (``retrieval.GalleryBlocks``): those whose first row it holds, their other
    rows received once from the ranks that encoded them."""

    def __init__(self, group: Group, shard: Shard, positions: np.ndarray, device, block_rows: int | None = None):
        block_rows = gallery_block_rows(block_rows)
        self.shard, self.positions, self.device, self.block_rows = shard, positions, device, block_rows
        starts = range(0, len(positions), block_rows)
        owners = [shard.holder(int(positions[a])) for a in starts]
        self.mine = [a for a, owner in zip(starts, owners, strict=True) if owner == group.rank]
        self.borrowed: dict[int, np.ndarray] = {}
        for src in range(group.world):  # each rank in turn sends the rows of its neighbours' blocks it holds
            payload = None
            if src == group.rank:
                payload = {}
                for a, owner in zip(starts, owners, strict=True):
                    pos = positions[a : a + block_rows]
                    held = (pos >= shard.start) & (pos < shard.stop)
                    if owner != src and held.any():
                        payload[a] = (held, shard.local(pos[held]))
            payload = broadcast_from(group, src, payload)
            for a, (held, values) in payload.items():
                if a in self.mine:
                    self.borrowed.setdefault(a, np.zeros((len(held), values.shape[1]), np.float32))[held] = values
        self.offset = 0

    def __len__(self) -> int:
        return sum(min(self.block_rows, len(self.positions) - a) for a in self.mine)

    def blocks(self, block_rows: int | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
        for a in self.mine:
            pos = self.positions[a : a + self.block_rows]
            rows = self.borrowed.get(a, np.zeros((len(pos), self.shard.features.shape[1]), np.float32)).copy()
            held = (pos >= self.shard.start) & (pos < self.shard.stop)
            rows[held] = self.shard.local(pos[held])
            block = normalised(torch.from_numpy(rows).to(self.device))
            yield a, a + len(pos), block


def rank_sharded(
    group: Group,
    shard: Shard,
    positions: np.ndarray,
    score: Score,
    n_queries: int,
    k: int,
    exclude: Sequence[int | None] | None,
    wanted: Sequence[Sequence[int]] | None,
    device,
    what: str,
    block_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[list[int]] | None] | None:
    """Exact top-``k`` (clipped) of every query over the whole gallery (``positions``: the feature row of each
    gallery item), and each ``wanted`` positive's 0-based position in the full ranking; on rank 0 (None elsewhere).
    Every rank scores its blocks; rank 0 merges the top-k lists by score, then global index."""
    source = ShardBlocks(group, shard, positions, device, block_rows)
    idx, vals, captured = topk_streamed(source, score, n_queries, k, exclude, what=what, capture=wanted)
    pieces = gather(group, (idx.cpu(), vals.cpu(), captured if wanted is not None else None))
    ranks = None
    if wanted is not None:
        targets = None
        if pieces is not None:
            scores = [dict(kv for piece in pieces for kv in piece[2][i].items()) for i in range(n_queries)]
            targets = [[(g, scores[i][g]) for g in w] for i, w in enumerate(wanted)]
        targets = broadcast(group, targets)
        counts = gather(group, count_above(source, score, n_queries, targets, exclude))
        if counts is not None:
            ranks = [sorted(sum(c[i][j] for c in counts) for j in range(len(w))) for i, w in enumerate(wanted)]
    if pieces is None:
        return None
    idx, vals = merge_topk([(p[0], p[1]) for p in pieces], k)
    return idx, vals, ranks
