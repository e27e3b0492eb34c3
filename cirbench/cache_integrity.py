"""Integrity of the gallery feature cache: every chunk and every finished entry is checked before its features are
used, by shape (rows, width, float32) and by content (the sha256 recorded when it was written).

Why: a cached feature file is read back by later evaluations, maybe after a disk fault, a full disk or a hand edit;
a shape check alone misses a flipped bit or an edited value, which would silently change every number computed
from it. A chunk's digest is kept beside it (``digest_<n>.txt``), a finished entry's in its sealed
``manifest.json`` (``features_sha256``, ``ids_sha256``). Anything that fails a check, or that carries no digest (an
entry written before caches carried digests, or a write that was interrupted), is encoded again with a one-line
note: the cache is rebuilt, the numbers stay the same.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from cirbench.errors import IntegrityError
from cirbench.integrity import check_file, check_sealed, file_sha256, is_sealed, seal_json
from cirbench.io import atomic_write, atomic_write_json, atomic_write_text

log = logging.getLogger("cirbench")
FIX = "encoding it again"


def valid_array(path: Path, rows: int, width: int | None, quiet: bool = False) -> np.ndarray | None:
    """The array at ``path`` if it is complete float32 features of ``rows`` x ``width`` (width None: any), else
    None with a one-line note (a truncated or foreign file is encoded again)."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as error:
        if not quiet:
            log.warning("cirbench: %s is damaged (%s); %s", path, " ".join(str(error).split())[:120], FIX)
        return None
    if array.dtype != np.float32 or array.ndim != 2 or array.shape[0] != rows or (width and array.shape[1] != width):
        if not quiet:
            log.warning(
                "cirbench: %s holds %s %s, not %d rows of float32 features; %s",
                path,
                array.dtype,
                tuple(array.shape),
                rows,
                FIX,
            )
        return None
    return array


def digest_path(chunk_path: Path) -> Path:
    """Where a chunk's sha256 is kept: ``chunk_000003.npy`` -> ``digest_000003.txt``."""
    return chunk_path.with_name(chunk_path.stem.replace("chunk_", "digest_", 1) + ".txt")


def write_chunk(chunk_path: Path, array: np.ndarray) -> None:
    """A chunk, then its digest (a chunk without one, from a write cut short, is encoded again). The digest is of
    the bytes written, not of the file read back: no second read, and no race with another process that finishes
    the entry and removes its chunks in between."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    data = buffer.getvalue()
    atomic_write(chunk_path, data)
    atomic_write_text(digest_path(chunk_path), hashlib.sha256(data).hexdigest() + "\n")


def read_chunk(chunk_path: Path, rows: int, width: int) -> np.ndarray | None:
    """A stored chunk whose bytes match its digest and whose shape fits, else None (with a note when one was
    there)."""
    if not chunk_path.is_file():
        return None
    try:
        expected = digest_path(chunk_path).read_text().strip()
    except OSError:
        log.warning("cirbench: %s has no recorded digest (its write was cut short); %s", chunk_path, FIX)
        return None
    try:
        check_file(chunk_path, expected, "cached feature chunk")
    except IntegrityError as error:
        log.warning("cirbench: %s; %s", error, FIX)
        return None
    return valid_array(chunk_path, rows, width)


def seal_entry(folder: Path, extra: dict[str, Any] | None = None) -> None:
    """Record the finished entry's digests (and ``extra``) in its sealed manifest: written last, so an entry whose
    finishing was cut short has no digest and is encoded again."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.pop("digest", None)
    manifest.update(extra or {})
    manifest["features_sha256"] = file_sha256(folder / "features.npy")
    manifest["ids_sha256"] = file_sha256(folder / "ids.json")
    atomic_write_json(folder / "manifest.json", seal_json(manifest))


def read_entry(folder: Path, rows: int, quiet: bool = False, check_bytes: bool = True) -> np.ndarray | None:
    """A finished entry's features if its manifest is sealed, its bytes match their digests (unless
    ``check_bytes`` is off: ``cache ls``) and its shape fits; else None, with a one-line note unless ``quiet``."""
    final = folder / "features.npy"
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if not is_sealed(manifest) or "features_sha256" not in manifest:
            raise IntegrityError(
                f"{folder}: cached features without a digest (written before feature caches "
                "carried digests, or their finishing was cut short)"
            )
        check_sealed(manifest, folder / "manifest.json", FIX)
        if check_bytes:
            check_file(final, manifest["features_sha256"], "cached features")
            check_file(folder / "ids.json", manifest["ids_sha256"], "cached feature ids")
    except (OSError, ValueError, IntegrityError) as error:
        if not quiet:
            text = " ".join(str(error).split())[:240]
            log.warning("cirbench: %s%s", text, "" if text.endswith(FIX) else f"; {FIX}")
        return None
    return valid_array(final, rows, None, quiet)
