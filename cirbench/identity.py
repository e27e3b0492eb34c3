"""Content identities: hashes of files, tensors and canonical JSON that run keys and caches are made of.

File hashes are memoised per process by (resolved path, size, mtime), so ``eval --all`` over many cards that share a
checkpoint reads it once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace: the same data always gives the same text (and hash)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def short_hash(obj: Any, length: int = 12) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (memoised while the file's size and mtime stay the same)."""
    path = Path(path)
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
        _FILE_HASHES[memo] = digest.hexdigest()
    return _FILE_HASHES[memo]


def files_sha256(paths: Iterable[str | os.PathLike]) -> str:
    """One hash over several files' names and bytes (annotation files), independent of their folders."""
    digest = hashlib.sha256()
    for path in sorted((Path(p) for p in paths), key=lambda p: p.name):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def tensors_sha256(state_dict: Mapping[str, Any]) -> str:
    """Hash of a state dict's names, dtypes, shapes and values: identifies weights whatever file holds them."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(_uint8()).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _uint8() -> Any:
    import torch

    return torch.uint8
