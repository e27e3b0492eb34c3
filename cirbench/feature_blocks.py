"""Features a block of rows at a time: exact search over a gallery larger than memory, and a cache entry written
from blocks that arrive in order (a torchrun evaluation's shards), so no process holds every row.

The entry written is the one ``features.encode_images`` finishes on one process (same key, same bytes);
``GalleryRows`` reads the finished entry's memory map (or a rank's shard) and normalises each block as the whole
gallery would be.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import mmap
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from cirbench.benchmarks.base import ImageRef
from cirbench.decoding import WORKERS
from cirbench.encoders import GalleryEncoder as Backbone
from cirbench.features import _finish, _write_manifest, entry_key
from cirbench.paths import cache_root
from cirbench.retrieval import gallery_block_rows


def store_feature_blocks(
    backbone: Backbone,
    refs: Sequence[ImageRef],
    width: int,
    blocks: Iterable[np.ndarray],
    preprocess: str,
    reader: str,
    images_id: str,
    decoder: str = WORKERS,
    counts: dict[str, int] | None = None,
) -> None:
    """The finished cache entry of features that arrive a block of rows at a time, in row order (a torchrun evaluation's
    shards): the same entry, bytes and key, written without any process holding every row."""
    folder = cache_root() / "features" / entry_key(backbone, preprocess, refs, reader, images_id, decoder)
    _write_manifest(folder, backbone, refs, preprocess, reader, images_id, decoder)

    def write(handle: Any) -> None:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False}
        np.lib.format.write_array_header_1_0(handle, {**header, "shape": (len(refs), width)})
        for block in blocks:
            handle.write(np.ascontiguousarray(block, dtype=np.float32).tobytes())

    _finish(folder, [r.key for r in refs], write, counts if decoder != WORKERS else None)


class GalleryRows:
    """A part's gallery read a block of rows at a time from the features (the cache's memory map, or a rank's
    shard), each block L2-normalised on ``device``: exact search then holds one block, never the whole gallery
    (``retrieval.GalleryBlocks``). ``positions[i]``: the feature row of gallery item ``offset + i``."""

    def __init__(self, features: np.ndarray, positions: np.ndarray, device: Any = "cpu", offset: int = 0) -> None:
        self.features, self.positions, self.device, self.offset = features, positions, device, offset

    def __len__(self) -> int:
        return len(self.positions)

    def rows(self, a: int, b: int) -> torch.Tensor:
        """Normalised rows of gallery items ``offset + a`` to ``offset + b`` (a slice when they are contiguous)."""
        pos = self.positions[a:b]
        if len(pos) and pos[-1] - pos[0] == len(pos) - 1 and (len(pos) < 3 or bool((np.diff(pos) == 1).all())):
            array = self.features[pos[0] : pos[-1] + 1]
        else:
            array = self.features[pos]
        block = torch.from_numpy(np.array(array, dtype=np.float32, copy=True))
        if isinstance(array, np.memmap):
            release_pages(array)
        return normalised(block.to(self.device))

    def blocks(self, block_rows: int | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
        step = gallery_block_rows(block_rows)
        for a in range(0, len(self), step):
            b = min(a + step, len(self))
            yield self.offset + a, self.offset + b, self.rows(a, b)

    def whole(self) -> torch.Tensor:
        return self.rows(0, len(self))


def normalised(block: torch.Tensor) -> torch.Tensor:
    """``block`` (a fresh copy) L2-normalised in place: the same bits as ``F.normalize`` (x / max(||x||, eps)) in a
    third of its time, which matters when every gallery block is normalised once per search."""
    return block.div_(block.norm(2, dim=-1, keepdim=True).clamp_min(1e-12))


def release_pages(view: np.ndarray) -> None:
    """Drop a memory-mapped block's pages from this process once it is copied (``madvise(MADV_DONTNEED)``; the
    file's pages stay in the page cache): otherwise every page read stays mapped, and a scan of a 17 GiB cache
    entry would show 17 GiB of resident memory. Linux only; elsewhere the kernel reclaims them under pressure."""
    if not sys.platform.startswith("linux") or not view.nbytes:
        return
    page = mmap.PAGESIZE
    address = view.__array_interface__["data"][0]
    start = address - address % page
    with contextlib.suppress(OSError, AttributeError):
        _libc().madvise(ctypes.c_void_p(start), ctypes.c_size_t(address + view.nbytes - start), 4)  # MADV_DONTNEED


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)
