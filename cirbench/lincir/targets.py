"""Clean-caption target embeddings cached on disk: the frozen tower gives every caption the same target forever.

Upstream recomputes ``E_T(t)`` at every visit. Here the first visit computes it and stores it in a memory-mapped file
shared by the ranks of a node; later visits (epochs 2+) read it back. Values are stored in the tower's output dtype
(bf16 -> fp32 is exact), so a cached target equals the one the first visit used, bit for bit. The cache lives in the
run directory and survives interruption, which keeps ``--resume`` bit-exact. ``lookup`` (host reads, no model) and
``complete`` (the missing rows) are separate so that a prefetch thread can read step s+1's rows during step s.

Integrity: each checkpoint's ``state.pt`` carries ``seal()``: which rows were filled and the sha256 of their values.
A resume ``restore``s that: rows filled after the checkpoint are cleared (they are computed again, the same bits),
and when the sealed rows no longer match (a damaged or edited file) the cache is started again with a one-line note.
The files are allocated in full when created, so a full disk is an ``OSError`` then, never a crash mid-training.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cirbench.errors import TrainError
from cirbench.io import atomic_write_json


@dataclass
class CachedRows:
    """A lookup: the rows' stored values (tower dtype; rows in ``missing`` hold no target) and which were not cached."""

    indices: np.ndarray
    values: torch.Tensor
    missing: np.ndarray

    def to(self, device: torch.device, non_blocking: bool = False, pin: bool = False) -> CachedRows:
        values = self.values.pin_memory() if pin else self.values
        return CachedRows(self.indices, values.to(device, non_blocking=non_blocking), self.missing)


log = logging.getLogger("cirbench")
_ROWS = 1 << 14  # rows hashed per read
_STORAGE = {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.uint16}


class TargetCache:
    """``n`` rows of ``dim`` values plus a filled flag per row; create on one rank, open on the others."""

    def __init__(self, folder: Path, n: int, dim: int, dtype: torch.dtype, key: str, create: bool = False):
        if dtype not in _STORAGE:
            raise ValueError(f"target cache cannot store {dtype}")
        self.folder, self.n, self.dim, self.dtype, self.key = Path(folder), n, dim, dtype, key
        meta_path = self.folder / "meta.json"
        meta = {"n": n, "dim": dim, "dtype": str(dtype), "key": key}
        if create:
            self.folder.mkdir(parents=True, exist_ok=True)
            if not self._intact(meta_path, meta):  # another key, or files cut short: start the cache again
                meta_path.unlink(missing_ok=True)
                itemsize = np.dtype(_STORAGE[dtype]).itemsize
                for name, size in (("values.bin", n * dim * itemsize), ("filled.bin", n)):
                    _allocate(self.folder / name, size)
                atomic_write_json(meta_path, meta)
        self.values = np.memmap(self.folder / "values.bin", dtype=_STORAGE[dtype], mode="r+", shape=(n, dim))
        self.filled = np.memmap(self.folder / "filled.bin", dtype=np.uint8, mode="r+", shape=(n,))

    def _intact(self, meta_path: Path, meta: dict) -> bool:
        """The cache on disk is this one (same key and shape) and its files have their full sizes."""
        try:
            if json.loads(meta_path.read_text()) != meta:
                return False
        except (OSError, ValueError):  # absent, empty or damaged meta.json
            return False
        itemsize = np.dtype(_STORAGE[self.dtype]).itemsize
        sizes = {"values.bin": self.n * self.dim * itemsize, "filled.bin": self.n}
        return all(
            (self.folder / name).is_file() and (self.folder / name).stat().st_size == size
            for name, size in sizes.items()
        )

    def _to_torch(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        return tensor.view(torch.bfloat16) if self.dtype == torch.bfloat16 else tensor

    def _to_numpy(self, tensor: torch.Tensor) -> np.ndarray:
        tensor = tensor.detach().to("cpu", self.dtype).contiguous()
        if self.dtype == torch.bfloat16:
            return tensor.view(torch.int16).numpy().view(np.uint16)
        return tensor.numpy()

    def get(
        self, indices: np.ndarray, compute: Callable[[np.ndarray], torch.Tensor], device: torch.device
    ) -> torch.Tensor:
        """fp32 targets of ``indices``; rows never seen are computed by ``compute(positions)`` and stored.

        ``compute`` gets the positions (into ``indices``) of the missing rows and returns their embeddings.
        """
        return self.complete(self.lookup(indices), compute, device)

    def lookup(self, indices: np.ndarray) -> CachedRows:
        """The cached rows of ``indices`` as they are now (host work only: a prefetch thread may call it)."""
        indices = np.asarray(indices, dtype=np.int64)
        missing = np.flatnonzero(self.filled[indices] == 0)
        return CachedRows(indices, self._to_torch(self.values[indices]), missing)

    def complete(
        self, rows: CachedRows, compute: Callable[[np.ndarray], torch.Tensor], device: torch.device
    ) -> torch.Tensor:
        """fp32 targets of a lookup: rows cached since it (by an earlier step or another rank) are read now, the
        rest computed by ``compute(positions)`` and stored. Computed rows are returned in the stored dtype, so
        every target equals what a read of the cache gives, bit for bit."""
        values = rows.values.to(device)
        if len(rows.missing):
            cached_now = self.filled[rows.indices[rows.missing]] != 0
            late, missing = rows.missing[cached_now], rows.missing[~cached_now]
            if len(late):
                values[torch.from_numpy(late).to(device)] = self._to_torch(self.values[rows.indices[late]]).to(device)
            if len(missing):
                fresh = compute(missing)
                self.values[rows.indices[missing]] = self._to_numpy(fresh)
                self.filled[rows.indices[missing]] = 1
                values[torch.from_numpy(missing).to(device)] = fresh.detach().to(device, self.dtype)
        return values.float()

    def _digest(self, filled: np.ndarray) -> str:
        """sha256 of the filled flags and the values of the rows they mark (other rows are never read)."""
        digest = hashlib.sha256(np.packbits(filled != 0).tobytes())
        for start in range(0, self.n, _ROWS):
            rows = filled[start : start + _ROWS] != 0
            digest.update(np.ascontiguousarray(self.values[start : start + _ROWS][rows]).tobytes())
        return digest.hexdigest()

    def seal(self) -> dict:
        """What a checkpoint records: the filled rows (packed bits) and their digest. The flags are copied before
        the values are read, so a row another rank fills meanwhile is either whole in the seal or not in it."""
        self.flush()
        filled = np.array(self.filled, dtype=np.uint8)
        return {"filled": torch.from_numpy(np.packbits(filled != 0)), "sha256": self._digest(filled), "n": self.n}

    def restore(self, sealed: dict) -> bool:
        """Back to a checkpoint's cache: rows filled since are cleared; a cache that no longer matches the seal is
        started again (a one-line note). Returns whether the sealed rows were intact."""
        filled = np.unpackbits(sealed["filled"].numpy(), count=self.n) if sealed.get("n") == self.n else None
        intact = filled is not None and self._digest(filled) == sealed.get("sha256")
        if not intact:
            log.warning(
                "cirbench: %s does not match its checkpoint (damaged or edited); computing its targets again",
                self.folder,
            )
            filled = np.zeros(self.n, dtype=np.uint8)
        self.filled[:] = filled
        self.filled.flush()
        return intact

    @property
    def hit_rate(self) -> float:
        return float(np.count_nonzero(self.filled)) / max(self.n, 1)

    def flush(self) -> None:
        self.values.flush()
        self.filled.flush()


def _allocate(path: Path, size: int) -> None:
    """A zero-filled file of ``size`` bytes whose blocks are reserved now: writing through the memory map later
    cannot hit a full disk (that would end the process with SIGBUS, not an error)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.ftruncate(fd, size)
        if size and hasattr(os, "posix_fallocate"):
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as error:
                if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # unsupported here: the sparse file stays
                    raise
    except OSError as error:
        path.unlink(missing_ok=True)
        raise TrainError(
            f"cannot create the target cache file {path} ({size:,} bytes): {error.strerror or error}; free space "
            "there, or train with --no-target-cache"
        ) from error
    finally:
        os.close(fd)
