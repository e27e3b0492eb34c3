"""Evaluation under torchrun: which rank encodes what, and the collectives that bring it to rank 0.

Why: encoding the images is the slow step of an evaluation, and it splits without changing a number. Each rank
encodes one contiguous shard of the images (and of every part's queries), cut on the batch boundaries a single
process uses, so every feature is bitwise the single-process one. Rank 0 checks that every row was encoded exactly
once; each rank keeps its shard and ranks every query there (``evaluation.sharded``); rank 0 merges, scores and
writes; the other ranks write nothing and print nothing but errors.
Objects travel over a gloo group (features live on the host); the process group itself is NCCL on CUDA devices
and gloo on CPU. Without torchrun the group is ``SINGLE`` and every helper is the identity.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import torch

from cirbench.backbones import Backbone
from cirbench.benchmarks.base import ImageRef
from cirbench.decoding import WORKERS, DeviceDecoder
from cirbench.errors import DistributedError
from cirbench.feature_blocks import store_feature_blocks
from cirbench.features import FeatureSet, batch_starts, cached_features, encode_rows
from cirbench.images import check_images, identity_hash
from cirbench.retrieval import BLOCK_ROWS
from cirbench.torchrun import Dist, check_environment, join, world_size

_OBJECTS: Any = None  # the gloo group the object collectives use under NCCL (None: the default group)


Group = Dist  # this process's place in a torchrun evaluation
SINGLE = Group()


@contextlib.contextmanager
def joined(device: str) -> Iterator[tuple[Group, str]]:
    """Under torchrun (``WORLD_SIZE`` > 1) join the process group for the block and give this rank's device
    (``cuda`` becomes ``cuda:LOCAL_RANK``); otherwise ``SINGLE`` and ``device`` unchanged."""
    global _OBJECTS
    world = world_size("eval")
    if world <= 1:
        yield SINGLE, device
        return
    check_environment(world, "eval")
    import torch.distributed as dist

    local = int(os.environ["LOCAL_RANK"])
    cuda = device.startswith("cuda")
    if device == "cuda":
        device = f"cuda:{local}"
    if cuda:
        torch.cuda.set_device(torch.device(device))
    created = not dist.is_initialized()
    if created:
        join("nccl" if cuda else "gloo", "eval", timedelta(hours=2))  # a rank never started is one line, no hang
    _OBJECTS = dist.new_group(backend="gloo") if cuda else None
    try:
        yield Group(dist.get_rank(), dist.get_world_size(), local), device
    except BaseException:
        # Keep the group (and its store) alive while this error travels to the CLI boundary, which tells the other
        # ranks which rank failed before this process exits; tearing it down here would only break their collectives
        # sooner, with no reason given (and NCCL's teardown can block on a peer that is gone).
        _OBJECTS = None
        raise
    _OBJECTS = None
    if created:
        dist.destroy_process_group()


@dataclass
class Shard:
    """The image features this rank holds: rows ``start:stop`` of the split's image list, ``bounds`` every rank's."""

    keys: list[str]  # every image of the split, in order (every rank reads the same split)
    start: int
    stop: int
    features: np.ndarray  # rows start:stop (a memory map of the cache entry when one rank holds them all)
    bounds: list[tuple[int, int]]
    seconds: float = 0.0
    from_cache: bool = False
    decoded: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {key: i for i, key in enumerate(self.keys)}
        self._starts = [a for a, _ in self.bounds]

    def holder(self, row: int) -> int:
        """The rank that holds feature row ``row`` (an empty shard holds none)."""
        rank = bisect.bisect_right(self._starts, row) - 1
        while self.bounds[rank][0] == self.bounds[rank][1]:
            rank -= 1
        return rank

    def local(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.features[np.asarray(rows, dtype=np.int64) - self.start], dtype=np.float32)


def broadcast(group: Group, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not group.enabled:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0, group=_OBJECTS)
    return box[0]


def broadcast_from(group: Group, src: int, obj: Any) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not group.enabled:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=src, group=_OBJECTS)
    return box[0]


def gather(group: Group, obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0 (in rank order); None on the other ranks."""
    if not group.enabled:
        return [obj]
    out: list[Any] | None = [None] * group.world if group.main else None
    torch.distributed.gather_object(obj, out, dst=0, group=_OBJECTS)
    return out


def scatter(group: Group, objs: Sequence[Any] | None) -> Any:
    """``objs[rank]`` (given on rank 0) on each rank."""
    if not group.enabled:
        return objs[0]
    box: list[Any] = [None]
    torch.distributed.scatter_object_list(box, list(objs) if group.main else None, src=0, group=_OBJECTS)
    return box[0]


def shards(boundaries: Sequence[int], n: int, world: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` rows per rank, cut only on ``boundaries`` (batch starts), as even as the batches
    allow; together they cover ``0..n`` once."""
    count = len(boundaries)
    cuts = [boundaries[i] if (i := -(-rank * count // world)) < count else n for rank in range(world)] + [n]
    return [(cuts[rank], cuts[rank + 1]) for rank in range(world)]


def assemble(pieces: Sequence[tuple[int, int, int, int, Any]], n: int, what: str) -> list[Any]:
    """The payloads of gathered ``(rank, start, stop, rows, payload)`` pieces in row order, after checking that rows
    ``0..n`` arrived exactly once (a duplicated or dropped item is a one-line error, never a silent result)."""
    expected = 0
    ordered = sorted(pieces, key=lambda piece: (piece[1], piece[0]))
    for rank, start, stop, rows, _ in ordered:
        if start != expected or rows != stop - start:
            total = sum(piece[3] for piece in pieces)
            raise DistributedError(
                f"distributed evaluation: the ranks sent {total} {what} for {n} (rank {rank}: rows {start}:{stop} "
                f"with {rows}, expected rows from {expected}); an item was encoded twice or not at all. Run every "
                "rank with the same cirbench and data, then run again"
            )
        expected = stop
    if expected != n:
        raise DistributedError(
            f"distributed evaluation: the ranks sent {expected} {what} for {n}; some were not encoded. Run every "
            "rank with the same cirbench and data, then run again"
        )
    return [piece[4] for piece in ordered]


def encode_images_sharded(
    group: Group,
    backbone: Backbone,
    refs: Sequence[ImageRef],
    *,
    preprocess: str,
    batch_size: int,
    num_workers: int,
    use_cache: bool,
    open_image: Callable,
    reader: str,
    images_id: str | None,
    progress: Callable[[int, int], None] | None = None,
    decoder: DeviceDecoder | None = None,
) -> Shard:
    """This rank's shard of the features of ``refs`` (``evaluation.sharded``): the rows it encoded, never gathered;
    or, when rank 0 has a finished cache entry, its memory map on rank 0 and nothing on the others. When caching,
    the shards travel to rank 0 a block at a time and are written as one entry (no process holds every row). Every
    rank decodes with the same kind of ``decoder`` (the evaluation chose it from the same settings on each rank)."""
    start = time.perf_counter()
    name = decoder.id if decoder is not None else WORKERS
    keys = [ref.key for ref in refs]
    n = len(refs)
    if images_id is None and group.main:
        images_id = identity_hash(check_images(refs), keys)
    hit = cached_features(backbone, refs, preprocess, reader, images_id, name) if use_cache and group.main else None
    width = broadcast(group, hit.features.shape[1] if hit is not None else None)
    if width is not None:
        bounds = [(0, n)] + [(n, n)] * (group.world - 1)
        if hit is not None:
            return Shard(keys, 0, n, hit.features, bounds, hit.seconds, True, hit.decoded)
        return Shard(keys, n, n, np.zeros((0, width), np.float32), bounds, 0.0, True)
    bounds = shards(batch_starts(n, batch_size), n, group.world)
    a, b = bounds[group.rank]
    counts: dict[str, int] = {}
    rows = encode_rows(backbone, refs, a, b, preprocess, batch_size, num_workers, open_image, progress, decoder, counts)
    pieces = gather(group, (group.rank, a, b, len(rows), counts))
    total = {"device": 0, WORKERS: 0}
    if pieces is not None:
        assemble([(*piece[:4], None) for piece in pieces], n, "image features")
        for *_, counted in pieces:
            for path, count in counted.items():
                total[path] = total.get(path, 0) + count
    if use_cache:
        blocks = _shards_in_order(group, rows, bounds, rows.shape[1])
        if group.main:
            store_feature_blocks(backbone, refs, rows.shape[1], blocks, preprocess, reader, images_id, name, total)
        else:
            for _ in blocks:
                pass
    return Shard(keys, a, b, rows, bounds, time.perf_counter() - start, False, total)


def _shards_in_order(group: Group, rows: np.ndarray, bounds: Sequence[tuple[int, int]], width: int) -> Iterator:
    """Every rank's rows, in row order, a block at a time on rank 0 (point-to-point over the object group); on the
    other ranks, sending their own blocks yields nothing."""
    for src, (a, b) in enumerate(bounds):
        for start in range(a, b, BLOCK_ROWS):
            stop = min(start + BLOCK_ROWS, b)
            if group.main and src == 0:
                yield rows[start - a : stop - a]
            elif group.main:
                block = torch.empty((stop - start, width), dtype=torch.float32)
                torch.distributed.recv(block, src=src, group=_OBJECTS)
                yield block.numpy()
            elif group.rank == src:
                torch.distributed.send(torch.from_numpy(np.ascontiguousarray(rows[start - a : stop - a])), 0, _OBJECTS)


def encode_queries_sharded(
    group: Group,
    references: Sequence[str],
    batch: int,
    feats: FeatureSet | None,
    encode: Callable[[int, int, FeatureSet], Any],
    rows: Callable[[Any], int],
) -> list[Any] | None:
    """Every rank encodes a contiguous slice of one part's queries (cut on multiples of ``batch``, as one process
    batches them): ``encode(start, stop, features)`` with the reference features rank 0 sends it. Rank 0 gets the
    slices' results in order (``rows(result)`` counts a result's queries); the other ranks get None."""
    n = len(references)
    bounds = shards(range(0, n, batch), n, group.world)
    payloads = None
    if group.main:
        payloads = [_rows_of(feats, references[a:b]) for a, b in bounds]
    local = scatter(group, payloads)
    a, b = bounds[group.rank]
    result = encode(a, b, local)
    pieces = gather(group, (group.rank, a, b, rows(result), result))
    return None if pieces is None else assemble(pieces, n, "query features")


def _rows_of(feats: FeatureSet | None, keys: Sequence[str]) -> FeatureSet:
    """The feature rows of ``keys`` alone (what one rank needs for its queries' references)."""
    unique = list(dict.fromkeys(keys))
    width = feats.features.shape[1] if feats is not None else 0
    if feats is None or not unique:
        return FeatureSet(unique, np.zeros((len(unique), width), np.float32), 0.0, True)
    return FeatureSet(unique, feats.rows(unique).numpy(), 0.0, True)
