"""Score-level fusion baselines: rank by a fusion of the image and the text similarity, not by one query vector.

``s_image = normalise(reference) · normalise(gallery)`` and ``s_text = normalise(text) · normalise(gallery)``,
where the text is the benchmark's modification text encoded alone (as ``text-only``; several captions: the
normalised average). Definitions (MORE_BENCHMARKS_AND_METHODS.md §C.5, §D.5):

- ``fusion-sum``: ``(1 - text_weight) · s_image + text_weight · s_text`` (rscir "Weighted Similarities",
  evaluate.py#L103-L128, default weight 0.5). At 0.5 it ranks exactly like FreeDom's "Text + Image"
  (``s_image + s_text``, utils_retrieval.py#L94-L97) and like ``image+text`` (§D.3); weight 0 is image-only and
  1 text-only, bit for bit.
- ``fusion-product``: ``s_image · s_text``, FreeDom's "Text x Image" (utils_retrieval.py#L98-L101), on raw cosines:
  two negative similarities give a positive score (§C.9), kept as the official code does.

Both go through the engine's fusion hook (``Method.fuses_scores``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cirbench.benchmarks.base import Query
from cirbench.errors import MethodError
from cirbench.methods import METHODS
from cirbench.methods.base import BATCH_SIZE, CAPTION_JOIN, MethodEntry
from cirbench.methods.baselines import _Baseline
from cirbench.options import Option


class _ScoreFusion(_Baseline):
    """Image and text query features for the engine, which ranks by ``fuse(s_image, s_text)``."""

    formula = ""
    fuses_scores = True

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "fusion": self.formula, "text": "the modification text encoded alone"}

    def encode_modalities(
        self, queries: Sequence[Query], texts: Sequence[Sequence[str]], reference_features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image = F.normalize(reference_features.float(), dim=-1)  # exactly image-only's query
        return image, self._text_features(texts, reference_features)  # exactly text-only's query

    def encode_queries(self, queries: Sequence[Query], texts: Sequence[Sequence[str]], reference_features):
        raise MethodError(f"{self.info.name} ranks by fused similarities and has no query embedding; evaluate it")

    def fuse(self, image_scores: torch.Tensor, text_scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class WeightedSum(_ScoreFusion):
    def __init__(self, name: str, backbone: Any, options: Mapping[str, Any]):
        super().__init__(name, backbone, options)
        self.weight = float(self.options["text_weight"])
        self.formula = f"(1 - {self.weight:g}) * s_image + {self.weight:g} * s_text"

    def fuse(self, image_scores: torch.Tensor, text_scores: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.weight) * image_scores + self.weight * text_scores


class Product(_ScoreFusion):
    formula = "s_image * s_text (raw cosines)"

    def fuse(self, image_scores: torch.Tensor, text_scores: torch.Tensor) -> torch.Tensor:
        return image_scores * text_scores


def _at_most_one(value: float) -> str | None:
    return None if value <= 1.0 else "a number in [0, 1] (0: image only, 1: text only)"


def _factory(cls: type[_ScoreFusion], name: str):
    def build(backbone: Any, checkpoint: Path | None, options: Mapping[str, Any]) -> _ScoreFusion:
        return cls(name, backbone, options)

    build.__qualname__ = f"build_{cls.__name__}"
    return build


TEXT_WEIGHT = Option(
    "text_weight", "float", 0.5, "weight of s_text (0 image only, 1 text only)", minimum=0, check=_at_most_one
)
METHODS.register(
    MethodEntry(
        name="fusion-sum",
        factory=_factory(WeightedSum, "fusion-sum"),
        description="score fusion: (1 - w) s_image + w s_text (w = 0.5 ranks as FreeDom's Text + Image)",
        options=(TEXT_WEIGHT, CAPTION_JOIN, BATCH_SIZE),
    )
)
METHODS.register(
    MethodEntry(
        name="fusion-product",
        factory=_factory(Product, "fusion-product"),
        description="score fusion: s_image * s_text (FreeDom's Text x Image)",
        options=(CAPTION_JOIN, BATCH_SIZE),
    )
)
