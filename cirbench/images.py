"""Opening benchmark images: existence checks with clear errors, and GeneCIS's exact VG crop.

Nothing is dropped silently: ``check_images`` lists every missing file, and the caller either fails with the
count, the first paths and the expected layout, or (``--skip-missing``) proceeds and records the count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from PIL import Image

from cirbench.benchmarks.base import ImageRef

GENECIS_DILATION = 0.7


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


def genecis_crop_box(
    box: tuple[float, float, float, float], width: int, height: int, dilation: float = GENECIS_DILATION
) -> tuple[float, float, float, float]:
    """GeneCIS's dilated crop of ``[x, y, w, h]``: right/bottom derive from the *clamped* left/top.

    So boxes near the border shift rather than shrink (facebookresearch/genecis vaw_dataset.py).
    """
    x, y, w, h = box
    left = max(0.0, x - dilation * w)
    top = max(0.0, y - dilation * h)
    right = min(float(width), left + (1 + dilation) * w)
    bottom = min(float(height), top + (1 + dilation) * h)
    return left, top, right, bottom


def expand_to_square(image: Image.Image) -> Image.Image:
    """Pad to a centred square with black, as GeneCIS's ``expand2square`` (fill 0 for mode L)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    fill = 0 if image.mode == "L" else (0,) * len(image.getbands())
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def open_image(ref: ImageRef) -> Image.Image:
    """Open an image as RGB (GeneCIS attribute boxes: crop, then square-pad, as upstream)."""
    if ref.path is None:
        raise FileNotFoundError(f"image {ref.key!r} has no path: pass --root with the benchmark's image folder")
    with Image.open(ref.path) as handle:
        image = handle.convert("RGB")
    if ref.crop is not None:
        image = expand_to_square(image.crop(genecis_crop_box(ref.crop, *image.size)))
    return image
