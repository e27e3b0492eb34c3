"""Image-feature cache shared by every method that uses the same frozen image tower.

Key: backbone id + weights id + preprocessing + the benchmark's image reader (when it is not plain RGB) + hash of
the ordered image list (keys and crops). Features are
the *unnormalised* projected embeddings (phi / IM2TEXT consume those), stored float32. Encoding writes chunks
atomically, so an interrupted run resumes at the first missing chunk; a finished entry is one memory-mappable
``features.npy`` plus ``ids.json`` and a readable ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cirbench.backbones import Backbone
from cirbench.benchmarks.base import ImageRef
from cirbench.images import open_rgb
from cirbench.io import atomic_write_json, atomic_write_npy
from cirbench.methods.preprocessing import build_preprocess
from cirbench.paths import cache_root

CHUNK = 2048
PLAIN_READER = "rgb"


def image_list_hash(refs: Sequence[ImageRef]) -> str:
    digest = hashlib.sha256()
    for ref in refs:
        suffix = ref.path.suffix.lower() if ref.path is not None else ""
        digest.update(f"{ref.key}|{ref.crop}|{suffix}\n".encode())
    return digest.hexdigest()


def entry_key(backbone: Backbone, preprocess: str, refs: Sequence[ImageRef], reader: str = PLAIN_READER) -> str:
    parts = [backbone.model_key, preprocess, image_list_hash(refs)]
    if reader != PLAIN_READER:
        parts.insert(2, reader)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


class _ImageDataset(torch.utils.data.Dataset):
    def __init__(self, refs: Sequence[ImageRef], transform: Callable, open_image: Callable):
        self.refs = refs
        self.transform = transform
        self.open_image = open_image

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> torch.Tensor:
        ref = self.refs[index]
        try:
            return self.transform(self.open_image(ref))
        except Exception as error:  # noqa: BLE001 - re-raised with the file named
            raise RuntimeError(f"cannot read image {ref.key!r} at {ref.path}: {error}") from error


@dataclass
class FeatureSet:
    """Unnormalised features aligned with ``keys``; ``index`` maps a key to its row."""

    keys: list[str]
    features: np.ndarray
    seconds: float
    from_cache: bool

    def __post_init__(self) -> None:
        self.index = {key: i for i, key in enumerate(self.keys)}

    def rows(self, keys: Sequence[str]) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.features[[self.index[k] for k in keys]], dtype=np.float32))


def encode_images(
    backbone: Backbone,
    refs: Sequence[ImageRef],
    preprocess: str = "clip",
    batch_size: int = 64,
    num_workers: int = 0,
    use_cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
    open_image: Callable = open_rgb,
    reader: str = PLAIN_READER,
) -> FeatureSet:
    """Features for ``refs`` in order, from the cache when present (chunks resume after interruption).

    ``open_image`` opens one ``ImageRef`` (a benchmark's reader, e.g. GeneCIS crops); ``reader`` names it in the key.
    """
    start = time.perf_counter()
    keys = [ref.key for ref in refs]
    key = entry_key(backbone, preprocess, refs, reader)
    folder = cache_root() / "features" / key
    final = folder / "features.npy"
    if use_cache and final.is_file():
        return FeatureSet(keys, np.load(final, mmap_mode="r"), time.perf_counter() - start, True)
    transform = build_preprocess(backbone, preprocess)
    folder.mkdir(parents=True, exist_ok=True)
    if use_cache:
        atomic_write_json(
            folder / "manifest.json",
            {
                "backbone": backbone.id,
                "weights_id": backbone.weights_id,
                "preprocess": preprocess,
                "reader": reader,
                "n_images": len(refs),
                "image_list_sha256": image_list_hash(refs),
                "dtype": "float32",
                "normalised": False,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )
    chunks: list[np.ndarray] = []
    done = 0
    for chunk_start in range(0, len(refs), CHUNK):
        chunk_refs = refs[chunk_start : chunk_start + CHUNK]
        chunk_path = folder / f"chunk_{chunk_start // CHUNK:06d}.npy"
        if use_cache and chunk_path.is_file():
            chunks.append(np.load(chunk_path))
        else:
            chunks.append(_encode_chunk(backbone, chunk_refs, transform, open_image, batch_size, num_workers))
            if use_cache:
                atomic_write_npy(chunk_path, chunks[-1])
        done += len(chunk_refs)
        if progress is not None:
            progress(done, len(refs))
    dim = chunks[0].shape[1] if chunks else backbone.image_embed_dim
    features = np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
    if use_cache:
        atomic_write_json(folder / "ids.json", keys)
        atomic_write_npy(final, features)
        for chunk_path in folder.glob("chunk_*.npy"):
            chunk_path.unlink()
    return FeatureSet(keys, features, time.perf_counter() - start, False)


def _encode_chunk(
    backbone: Backbone,
    refs: Sequence[ImageRef],
    transform: Callable,
    open_image: Callable,
    batch_size: int,
    num_workers: int,
) -> np.ndarray:
    loader = torch.utils.data.DataLoader(
        _ImageDataset(refs, transform, open_image), batch_size=batch_size, num_workers=num_workers, shuffle=False
    )
    out = [backbone.encode_image(pixels).cpu().numpy().astype(np.float32) for pixels in loader]
    return np.concatenate(out)


def list_entries() -> list[dict]:
    """Manifests of every cache entry, with size on disk and completeness."""
    root = cache_root() / "features"
    entries = []
    for folder in sorted(root.glob("*")) if root.is_dir() else []:
        manifest = folder / "manifest.json"
        info = json.loads(manifest.read_text()) if manifest.is_file() else {}
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        entries.append({"key": folder.name, "complete": (folder / "features.npy").is_file(), "bytes": size, **info})
    return entries


def clear_entries(backbone: str | None = None) -> int:
    """Delete cache entries (all, or those of one backbone id); returns how many were removed."""
    removed = 0
    for entry in list_entries():
        if backbone is None or entry.get("backbone") == backbone:
            shutil.rmtree(cache_root() / "features" / entry["key"])
            removed += 1
    return removed
