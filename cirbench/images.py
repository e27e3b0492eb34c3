"""Benchmark images on disk: checks with clear counts, their identities, and the plain RGB opener.

Nothing is dropped silently: ``check_images`` lists every missing, empty and (at ``header`` or ``deep`` level)
undecodable file, and the caller either fails with the count, the first paths and the expected layout, or
(``--skip-missing``) proceeds and records the counts. Each present image's identity (resolved path, size, mtime)
is kept, so the feature cache and the result know exactly which files were read. Every open goes through
``image_limits`` (one pixel budget before decoding; the end marker at ``header`` level, so a truncated JPEG or PNG
is found without decoding it).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image

from cirbench.image_limits import OverBudget, end_marker_problem, open_image, open_within_budget

Level = Literal["exists", "header", "deep"]


@dataclass(frozen=True)
class ImageRef:
    """One image to encode: its canonical key, the file it lives in and an optional box.

    ``crop`` is a raw ``[x, y, w, h]`` box that the benchmark's ``open_image`` applies (GeneCIS attribute tasks).
    It lives here, below the benchmarks, because every image check and opener takes one; ``benchmarks.base``
    re-exports it.
    """

    key: str
    path: Path | None
    crop: tuple[float, float, float, float] | None = None


@dataclass
class ImageCheck:
    """Which image keys of a split can be read, which are missing and which are unreadable (with the reason)."""

    present: list[str] = field(default_factory=list)
    missing: list[ImageRef] = field(default_factory=list)
    unreadable: list[tuple[ImageRef, str]] = field(default_factory=list)
    identity: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # key -> (resolved path, size, mtime)
    level: Level = "exists"

    @property
    def bad(self) -> list[ImageRef]:
        """Every image that cannot be used: missing or unreadable."""
        return self.missing + [ref for ref, _ in self.unreadable]

    def summary(self, limit: int = 5) -> str:
        total = len(self.present) + len(self.bad)
        parts = []
        if self.missing:
            paths = ", ".join(str(ref.path) for ref in self.missing[:limit])
            more = f" (+{len(self.missing) - limit} more)" if len(self.missing) > limit else ""
            parts.append(f"{len(self.missing)} of {total} images missing: {paths}{more}")
        if self.unreadable:
            shown = ", ".join(f"{ref.path} ({why})" for ref, why in self.unreadable[:limit])
            more = f" (+{len(self.unreadable) - limit} more)" if len(self.unreadable) > limit else ""
            parts.append(f"{len(self.unreadable)} of {total} images unreadable: {shown}{more}")
        return "; ".join(parts) or f"all {total} images readable"


def _problem(path: os.PathLike, size: int, level: Level) -> str | None:
    """Why a present file is no usable image (None when it is), at the given depth: ``header`` checks a JPEG's or
    PNG's end marker (a file cut short is named as such), then opens it (format, size within the pixel budget);
    ``deep`` also decodes it."""
    if size == 0:
        return "empty file"
    if level == "exists":
        return None
    try:
        if (cut := end_marker_problem(path, size)) is not None:
            return cut
        with open_within_budget(path) as handle:
            if level == "deep":
                handle.load()
    except OverBudget as over:
        return str(over)
    except Exception as error:  # noqa: BLE001 - every decoder failure is one reason string
        return " ".join(f"{type(error).__name__}: {error}".split())[:160]
    return None


def check_images(
    refs: Iterable[ImageRef], level: Level = "exists", progress: Callable[[int, int], None] | None = None
) -> ImageCheck:
    """Check every image: ``exists`` (present, not empty: one ``stat``), ``header`` (the format is recognised, the
    size is within the pixel budget and a JPEG or PNG has its end marker: the first and last bytes read) or ``deep``
    (it also decodes fully: finds a corrupt middle)."""
    refs = list(refs)
    result = ImageCheck(level=level)
    for i, ref in enumerate(refs, 1):
        try:
            info = os.stat(ref.path) if ref.path is not None else None
        except (OSError, ValueError):  # ValueError: a NUL in a plugin's path
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):
            result.missing.append(ref)
        elif (why := _problem(ref.path, info.st_size, level)) is not None:
            result.unreadable.append((ref, why))
        else:
            result.present.append(ref.key)
            result.identity[ref.key] = (os.path.realpath(ref.path), info.st_size, info.st_mtime_ns)
        if progress is not None and (i % 256 == 0 or i == len(refs)):
            progress(i, len(refs))
    return result


def identity_hash(check: ImageCheck, keys: Iterable[str]) -> str:
    """One hash over the identities (resolved path, size, mtime) of ``keys``: which files a run read."""
    digest = hashlib.sha256()
    for key in keys:
        digest.update(f"{key}|{check.identity.get(key)}\n".encode())
    return digest.hexdigest()


def content_hash(paths: Iterable[os.PathLike]) -> str:
    """One hash over the bytes of every file (``--verify``): identical whatever the paths or timestamps."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        digest.update(b"\n")
    return digest.hexdigest()


def open_rgb(ref: ImageRef) -> Image.Image:
    """Open an image as RGB (the pixel budget applied before decoding)."""
    if ref.path is None:
        raise FileNotFoundError(f"image {ref.key!r} has no path: pass --root with the benchmark's image folder")
    with open_image(ref.path) as handle:
        return handle.convert("RGB")
