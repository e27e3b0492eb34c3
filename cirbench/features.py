"""Image-feature cache shared by every method that uses the same frozen image tower.

Key: backbone id + weights id + preprocessing + the benchmark's image reader (when it is not plain RGB) + the ordered
image list (keys and crops) + the images' identities (resolved path, size, mtime; or their bytes with ``--verify``)
+ the decoder when it is not the CPU workers' (``decoding``: device-decoded pixels differ slightly), so changed
files or another dataset with the same file names never reuse stale features. Features are the
*unnormalised* projected embeddings (phi / IM2TEXT consume those), stored float32. Encoding writes chunks atomically,
so an interrupted run (even ``kill -9``) resumes at the first missing chunk; a finished entry is one memory-mappable
``features.npy`` plus ``ids.json`` and a readable ``manifest.json``. Every chunk and every finished entry is checked
(row count, width, dtype, and its bytes against the sha256 recorded when it was written: ``cache_integrity``) before
use; a bad one is encoded again, with a one-line note. Finishing an entry holds a file lock, so two evaluations of
the same gallery never race.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock
from PIL import Image

from cirbench.benchmarks.base import ImageRef
from cirbench.cache_integrity import read_chunk, read_entry, seal_entry, write_chunk
from cirbench.decoding import WORKERS, DeviceDecoder, encode_chunk_on_device, unreadable
from cirbench.encoders import GalleryEncoder as Backbone
from cirbench.errors import UserError
from cirbench.finite import NAN_FEATURES_FIX, require_finite_array
from cirbench.images import check_images, identity_hash, open_rgb
from cirbench.io import atomic_write, atomic_write_json, atomic_write_npy
from cirbench.methods.preprocessing import build_preprocess
from cirbench.paths import cache_root

CHUNK = 2048
PLAIN_READER = "rgb"
log = logging.getLogger("cirbench")


def image_list_hash(refs: Sequence[ImageRef]) -> str:
    digest = hashlib.sha256()
    for ref in refs:
        suffix = ref.path.suffix.lower() if ref.path is not None else ""
        digest.update(f"{ref.key}|{ref.crop}|{suffix}\n".encode())
    return digest.hexdigest()


def entry_key(
    backbone: Backbone,
    preprocess: str,
    refs: Sequence[ImageRef],
    reader: str = PLAIN_READER,
    images_id: str = "",
    decoder: str = WORKERS,
) -> str:
    parts = [backbone.model_key, preprocess, image_list_hash(refs), images_id]
    if reader != PLAIN_READER:
        parts.insert(2, reader)
    if decoder != WORKERS:  # the workers' entries keep the keys they always had
        parts.append(decoder)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


class _ImageDataset(torch.utils.data.Dataset):
    """Pixels of each image, or (a placeholder and) the reason it could not be read: raised by the main process."""

    def __init__(self, refs: Sequence[ImageRef], transform: Callable, open_image: Callable):
        self.refs = refs
        self.transform = transform
        self.open_image = open_image

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        ref = self.refs[index]
        try:
            return self.transform(self.open_image(ref)), ""
        except Exception as error:  # noqa: BLE001 - reported with the file named, in the main process
            placeholder = self.transform(Image.new("RGB", (8, 8)))
            if isinstance(error, UserError):  # already names the file, the cause and the fix (the pixel budget)
                return placeholder, " ".join(str(error).split())
            reason = " ".join(f"{type(error).__name__}: {error}".split())[:200]
            return placeholder, f"cannot decode image {ref.key!r} at {ref.path} ({reason})"


@dataclass
class FeatureSet:
    """Unnormalised features aligned with ``keys``; ``index`` maps a key to its row."""

    keys: list[str]
    features: np.ndarray
    seconds: float
    from_cache: bool
    decoded: dict[str, int] = field(default_factory=dict)  # images per decoding path ("device", "workers")

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
    images_id: str | None = None,
    decoder: DeviceDecoder | None = None,
) -> FeatureSet:
    """Features for ``refs`` in order, from the cache when present (chunks resume after interruption).

    ``open_image`` opens one ``ImageRef`` (a benchmark's reader, e.g. GeneCIS crops); ``reader`` names it in the key.
    ``images_id`` identifies the files (the evaluation passes what it records); by default their stat identity.
    ``decoder``: decode JPEGs on the device (``decoding``); None: the CPU workers decode everything.
    """
    start = time.perf_counter()
    keys = [ref.key for ref in refs]
    if images_id is None:
        images_id = identity_hash(check_images(refs), keys)
    decoder_name = decoder.id if decoder is not None else WORKERS
    key = entry_key(backbone, preprocess, refs, reader, images_id, decoder_name)
    folder = cache_root() / "features" / key
    final = folder / "features.npy"
    width = backbone.image_embed_dim
    if use_cache and final.is_file():
        with FileLock(folder / ".lock"):
            cached = read_entry(folder, len(refs))
        if cached is not None:
            return FeatureSet(keys, cached, time.perf_counter() - start, True, _entry_counts(folder, len(refs)))
        final.unlink(missing_ok=True)
    transform = build_preprocess(backbone, preprocess)
    if use_cache:
        _write_manifest(folder, backbone, refs, preprocess, reader, images_id, decoder_name)
    chunks: list[np.ndarray] = []
    counts: dict[str, int] = {"device": 0, WORKERS: 0}
    done = 0
    for chunk_start in range(0, len(refs), CHUNK):
        chunk_refs = refs[chunk_start : chunk_start + CHUNK]
        chunk_path = folder / f"chunk_{chunk_start // CHUNK:06d}.npy"
        stored = read_chunk(chunk_path, len(chunk_refs), width) if use_cache else None
        chunk_counts = _chunk_counts(chunk_path, len(chunk_refs), decoder) if stored is not None else None
        if chunk_counts is not None:
            chunks.append(np.asarray(stored))
        else:
            chunk_counts = {}
            chunks.append(
                _encode_chunk(
                    backbone, chunk_refs, transform, open_image, batch_size, num_workers, decoder, chunk_counts
                )
            )
            require_finite_array(chunks[-1], f"image features of backbone {backbone.id}", fix=NAN_FEATURES_FIX)
            if use_cache:  # only finite features are ever cached
                if decoder is not None:  # before the chunk: a chunk on disk always has its counts
                    atomic_write_json(chunk_path.with_suffix(".json"), chunk_counts)
                write_chunk(chunk_path, chunks[-1])
        for name, n in chunk_counts.items():
            counts[name] = counts.get(name, 0) + n
        done += len(chunk_refs)
        if progress is not None:
            progress(done, len(refs))
    features = np.concatenate(chunks) if chunks else np.zeros((0, width), np.float32)
    if use_cache:
        _finish(folder, keys, features, counts if decoder is not None else None)
    return FeatureSet(keys, features, time.perf_counter() - start, False, counts)


def _chunk_counts(chunk_path: Path, rows: int, decoder: DeviceDecoder | None) -> dict[str, int] | None:
    """How a stored chunk's images were decoded (None: unknown, so the chunk is encoded again)."""
    if decoder is None:
        return {WORKERS: rows}
    try:
        counts = json.loads(chunk_path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    return counts if isinstance(counts, dict) and sum(counts.values()) == rows else None


def _entry_counts(folder: Path, rows: int) -> dict[str, int]:
    """How a finished entry's images were decoded: its manifest says for a device decoder's entry; the workers'
    entries (whose manifests never said) decoded every image."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = {}
    return dict(manifest.get("images_decoded") or {"device": 0, WORKERS: rows})


def _write_manifest(
    folder: Path,
    backbone: Backbone,
    refs: Sequence[ImageRef],
    preprocess: str,
    reader: str,
    images_id: str,
    decoder: str = WORKERS,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        folder / "manifest.json",
        {
            "backbone": backbone.id,
            "weights_id": backbone.weights_id,
            "preprocess": preprocess,
            "reader": reader,
            **({"decoder": decoder} if decoder != WORKERS else {}),
            "n_images": len(refs),
            "image_list_sha256": image_list_hash(refs),
            "images_sha256": images_id,
            "dtype": "float32",
            "normalised": False,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )


def _finish(folder: Path, keys: list[str], features: Any, counts: dict[str, int] | None = None) -> None:
    """Make an entry whole (ids, then the memory-mappable features) under the entry's lock; drop its chunks. A
    device decoder's entry records in its manifest how many images each path decoded. ``features``: an array, or
    a function writing the ``.npy`` bytes to a handle (``store_feature_blocks``)."""
    with FileLock(folder / ".lock"):
        atomic_write_json(folder / "ids.json", keys)
        if callable(features):
            atomic_write(folder / "features.npy", features)
        else:
            atomic_write_npy(folder / "features.npy", features)
        seal_entry(folder, {"images_decoded": counts} if counts is not None else None)
        for chunk_path in [*folder.glob("chunk_*.npy"), *folder.glob("chunk_*.json"), *folder.glob("digest_*.txt")]:
            chunk_path.unlink(missing_ok=True)


def cached_features(
    backbone: Backbone, refs: Sequence[ImageRef], preprocess: str, reader: str, images_id: str, decoder: str = WORKERS
) -> FeatureSet | None:
    """The finished cache entry of ``refs``, or None (absent or damaged): what a torchrun evaluation's rank 0
    looks up before the ranks split the encoding."""
    start = time.perf_counter()
    folder = cache_root() / "features" / entry_key(backbone, preprocess, refs, reader, images_id, decoder)
    if not (folder / "features.npy").is_file():
        return None
    with FileLock(folder / ".lock"):
        cached = read_entry(folder, len(refs))
    if cached is None:
        return None
    return FeatureSet(
        [r.key for r in refs], cached, time.perf_counter() - start, True, _entry_counts(folder, len(refs))
    )


def batch_starts(n: int, batch_size: int) -> list[int]:
    """Where ``encode_images`` starts a batch over ``n`` images (chunks of ``CHUNK``, batches inside each).

    A shard that begins and ends on these positions is encoded in exactly the batches one process uses, so its
    features are bitwise those of a single-process run (a batch of another size may round differently)."""
    return [c + b for c in range(0, n, CHUNK) for b in range(0, min(CHUNK, n - c), batch_size)]


def encode_rows(
    backbone: Backbone,
    refs: Sequence[ImageRef],
    start: int,
    stop: int,
    preprocess: str = "clip",
    batch_size: int = 64,
    num_workers: int = 0,
    open_image: Callable = open_rgb,
    progress: Callable[[int, int], None] | None = None,
    decoder: DeviceDecoder | None = None,
    counts: dict[str, int] | None = None,
) -> np.ndarray:
    """Features of ``refs[start:stop]`` (both on ``batch_starts`` or the end), in the single-process batches; no
    cache is read or written (a torchrun rank's shard). ``counts`` adds how many images each path decoded."""
    transform = build_preprocess(backbone, preprocess)
    out = [np.zeros((0, backbone.image_embed_dim), np.float32)]
    counts = {} if counts is None else counts
    for chunk_start in range(start - start % CHUNK, stop, CHUNK):
        a, b = max(start, chunk_start), min(stop, chunk_start + CHUNK)
        if a >= b:
            continue
        out.append(_encode_chunk(backbone, refs[a:b], transform, open_image, batch_size, num_workers, decoder, counts))
        if progress is not None:
            progress(b - start, stop - start)
    return np.concatenate(out)


def _encode_chunk(
    backbone: Backbone,
    refs: Sequence[ImageRef],
    transform: Callable,
    open_image: Callable,
    batch_size: int,
    num_workers: int,
    decoder: DeviceDecoder | None = None,
    counts: dict[str, int] | None = None,
) -> np.ndarray:
    """One chunk's features, in batches of ``batch_size``; ``counts`` adds how many images each path decoded."""
    counts = {} if counts is None else counts
    dataset = _ImageDataset(refs, transform, open_image)
    if decoder is not None:
        return encode_chunk_on_device(backbone, refs, dataset, decoder, batch_size, num_workers, counts)
    collate = None
    if backbone.collate is not None:  # an own encoder's items (e.g. PIL images of any size): its collate, problems
        own = backbone.collate

        def collate(pairs: list[tuple[Any, str]]) -> tuple[Any, list[str]]:
            return own([item for item, _ in pairs]), [problem for _, problem in pairs]

    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False, collate_fn=collate
    )
    out = []
    for pixels, problems in loader:
        failed = [p for p in problems if p]
        if failed:
            raise unreadable(failed[0])
        out.append(backbone.encode_image(pixels).cpu().numpy().astype(np.float32))
    counts[WORKERS] = counts.get(WORKERS, 0) + len(refs)
    return np.concatenate(out)


def list_entries() -> list[dict]:
    """Manifests of every cache entry, with size on disk and completeness. Anything in the cache folder that is no
    entry (a stray file) or whose manifest is damaged is listed as such, never a reason to stop."""
    root = cache_root() / "features"
    entries = []
    for folder in sorted(root.glob("*")) if root.is_dir() else []:
        if not folder.is_dir():
            entries.append({"key": folder.name, "complete": False, "bytes": _size(folder), "note": "not an entry"})
            continue
        info = _manifest(folder / "manifest.json")
        size = sum(_size(p) for p in folder.iterdir() if p.is_file())
        rows = info.get("n_images", -1)
        rows = rows if isinstance(rows, int) and not isinstance(rows, bool) else -1
        final = folder / "features.npy"
        complete = final.is_file() and read_entry(folder, rows, quiet=True, check_bytes=False) is not None
        entries.append({"key": folder.name, "complete": complete, "bytes": size, **info})
    return entries


def _manifest(path: Path) -> dict:
    """An entry's manifest as a mapping ({} when absent; a note when it is damaged)."""
    try:
        info = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {"note": "unreadable manifest"}
    return info if isinstance(info, dict) else {"note": "unreadable manifest"}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def clear_entries(backbone: str | None = None) -> int:
    """Delete cache entries (all, or those of one backbone id); returns how many were removed."""
    removed = 0
    for entry in list_entries():
        if backbone is None or entry.get("backbone") == backbone:
            path = cache_root() / "features" / entry["key"]
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            removed += 1
    return removed
