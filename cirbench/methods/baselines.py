"""Training-free sanity floors: image-only, text-only, image+text (sum of normalised features) and random."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cirbench.benchmarks.base import Query
from cirbench.methods import METHODS
from cirbench.methods.base import (
    BATCH_SIZE,
    CAPTION_JOIN,
    Method,
    MethodEntry,
    MethodInfo,
    average_variants,
    batched,
)
from cirbench.options import seed_option


class _Baseline(Method):
    preprocess = "clip"

    def __init__(self, name: str, backbone: Any, options: Mapping[str, Any]):
        self.info = MethodInfo(name=name)
        self.backbone = backbone
        self.options = dict(options)
        self.caption_join = str(self.options.get("fiq_join", "both-orders"))
        self.batch_size = int(self.options.get("batch_size", 256))

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in self.options.items() if k != "batch_size"}

    def _text_features(self, texts: Sequence[Sequence[str]], refs: torch.Tensor) -> torch.Tensor:
        def encode(flat: list[str], _refs: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.backbone.encode_text(flat[s]) for s in batched(len(flat), self.batch_size)])

        return average_variants(encode, texts, refs)


class ImageOnly(_Baseline):
    def encode_queries(self, queries: Sequence[Query], texts: Sequence[Sequence[str]], reference_features):
        return F.normalize(reference_features.float(), dim=-1)


class TextOnly(_Baseline):
    def encode_queries(self, queries: Sequence[Query], texts: Sequence[Sequence[str]], reference_features):
        return self._text_features(texts, reference_features)


class ImageText(_Baseline):
    def encode_queries(self, queries: Sequence[Query], texts: Sequence[Sequence[str]], reference_features):
        text = self._text_features(texts, reference_features)
        return F.normalize(F.normalize(reference_features.float(), dim=-1) + text, dim=-1)


class Random(_Baseline):
    """Random query vectors from a fixed seed: the floor every method must clear."""

    def encode_queries(self, queries: Sequence[Query], texts: Sequence[Sequence[str]], reference_features):
        # One generator per query id: the numbers do not depend on batch size or query order.
        seed, dim = int(self.options["seed"]), reference_features.shape[1]
        rows = [
            torch.randn(dim, generator=torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(q.qid.encode())))
            for q in queries
        ]
        return F.normalize(torch.stack(rows), dim=-1).to(reference_features.device)


def _factory(cls: type[_Baseline], name: str):
    def build(backbone: Any, checkpoint: Path | None, options: Mapping[str, Any]) -> _Baseline:
        return cls(name, backbone, options)

    build.__qualname__ = f"build_{cls.__name__}"
    return build


for _name, _cls, _text, _options in (
    ("image-only", ImageOnly, "reference image feature alone", ()),
    ("text-only", TextOnly, "modification text feature alone", (CAPTION_JOIN, BATCH_SIZE)),
    ("image+text", ImageText, "sum of the normalised image and text features", (CAPTION_JOIN, BATCH_SIZE)),
    ("random", Random, "random query features (sanity floor)", (seed_option("seed of the vectors"),)),
):
    METHODS.register(MethodEntry(name=_name, factory=_factory(_cls, _name), description=_text, options=_options))
