"""Image preprocessing kinds that methods ask for: plain CLIP, or SEARLE's ``targetpad``.

Why a separate kind: SEARLE (and CLIP4Cir before it) pad very elongated images towards an aspect ratio of 1.25
before CLIP's resize + centre crop, so the crop keeps more of the picture; its published numbers use this on
queries *and* gallery. The feature cache is keyed by the kind, so both variants can coexist.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PIL import Image

from cirbench.errors import MethodError

PREPROCESS_KINDS = ("clip", "targetpad")
TARGET_RATIO = 1.25


class TargetPad:
    """SEARLE's ``TargetPad`` (``src/data_utils.py``), byte-for-byte in its geometry.

    Images whose long/short side ratio is below ``target_ratio`` pass through untouched. Otherwise both sides
    are padded symmetrically with black towards a square of side ``max(w, h) / target_ratio`` (each pad is
    ``int((side - dim) / 2)``, truncated, never negative), so a 200x100 image becomes 200x160.
    """

    def __init__(self, target_ratio: float = TARGET_RATIO):
        self.target_ratio = float(target_ratio)

    def padding(self, width: int, height: int) -> tuple[int, int]:
        """(horizontal, vertical) pad on each side for an image of this size."""
        if max(width, height) / min(width, height) < self.target_ratio:
            return 0, 0
        side = max(width, height) / self.target_ratio
        return max(int((side - width) / 2), 0), max(int((side - height) / 2), 0)

    def __call__(self, image: Image.Image) -> Image.Image:
        from torchvision.transforms import functional as TF

        hp, vp = self.padding(*image.size)
        if hp == 0 and vp == 0:
            return image
        return TF.pad(image, [hp, vp, hp, vp], 0, "constant")

    def __repr__(self) -> str:
        return f"TargetPad(target_ratio={self.target_ratio})"


class _Chain:
    """``f`` then ``g``; a plain class so the transform pickles for DataLoader workers."""

    def __init__(self, first: Callable, then: Callable):
        self.first, self.then = first, then

    def __call__(self, image: Image.Image) -> Any:
        return self.then(self.first(image))

    def __repr__(self) -> str:
        return f"{self.first!r} -> {self.then!r}"


def build_preprocess(backbone: Any, kind: str) -> Callable[[Image.Image], Any]:
    """PIL image -> pixel tensor for a preprocessing kind.

    ``clip`` is the backbone's own eval transform (resize shortest side, centre crop, RGB, normalise);
    ``targetpad`` prepends ``TargetPad(1.25)`` to it: SEARLE's ``targetpad_transform`` for OpenAI CLIP (same
    resize, crop and mean/std), and the natural equivalent for any other backbone.
    """
    if kind == "clip":
        return backbone.preprocess
    if kind == "targetpad":
        return _Chain(TargetPad(TARGET_RATIO), backbone.preprocess)
    raise MethodError(f"unknown preprocessing {kind!r}; choose one of {', '.join(PREPROCESS_KINDS)}")
