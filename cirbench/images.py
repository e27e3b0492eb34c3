"""Benchmark images on disk: existence checks with clear counts, and the plain RGB opener.

Nothing is dropped silently: ``check_images`` lists every missing file, and the caller either fails with the count,
the first paths and the expected layout, or (``--skip-missing``) proceeds and records the count. A benchmark that
opens images differently (GeneCIS crops) provides its own opener.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    from cirbench.benchmarks.base import ImageRef


@dataclass
class ImageCheck:
    """Which image keys of a split exist on disk, and which do not."""

    present: list[str] = field(default_factory=list)
    missing: list[ImageRef] = field(default_factory=list)

    def summary(self, limit: int = 5) -> str:
        paths = ", ".join(str(ref.path) for ref in self.missing[:limit])
        more = f" (+{len(self.missing) - limit} more)" if len(self.missing) > limit else ""
        return f"{len(self.missing)} of {len(self.missing) + len(self.present)} images missing: {paths}{more}"


def check_images(refs: Iterable[ImageRef]) -> ImageCheck:
    result = ImageCheck()
    for ref in refs:
        if ref.path is not None and ref.path.is_file():
            result.present.append(ref.key)
        else:
            result.missing.append(ref)
    return result


def open_rgb(ref: ImageRef) -> Image.Image:
    """Open an image as RGB."""
    if ref.path is None:
        raise FileNotFoundError(f"image {ref.key!r} has no path: pass --root with the benchmark's image folder")
    with Image.open(ref.path) as handle:
        return handle.convert("RGB")
