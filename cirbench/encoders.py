"""What encodes a gallery: the shared open_clip ``Backbone``, or a method's own image encoder.

The feature cache (``features.encode_images``) and the engine need only this much of either, so a universal
embedder (an HF dual encoder, an MLLM embedder, an mteb model) encodes its gallery through the same cached,
resumable, integrity-checked path as a CLIP backbone. ``model_key`` (architecture + weights identity) is what the
cache and run keys hash. ``preprocess`` turns one RGB PIL image into an item; ``collate`` turns a list of items into
what ``encode_image`` takes (None: torch's default stacking of same-shaped pixel tensors; an MLLM keeps a list of
images of any size).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch


class GalleryEncoder(Protocol):
    id: str
    weights_id: str
    quick_gelu: bool
    device: torch.device
    preprocess: Callable[[Any], Any]
    collate: Callable[[Sequence[Any]], Any] | None

    @property
    def model_key(self) -> str: ...

    @property
    def image_embed_dim(self) -> int: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def encode_image(self, batch: Any) -> torch.Tensor:
        """Unnormalised image embeddings, one row per image of the collated batch."""
        ...
