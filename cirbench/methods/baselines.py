"""Training-free sanity floors: image-only, text-only, image+text (sum of normalised features) and random."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cirbench.backbones import Backbone
from cirbench.benchmarks.base import Query
from cirbench.methods import register_method
from cirbench.methods.base import MethodEntry, MethodInfo, average_variants, batched, modification_variants


class _Baseline:
    preprocess = "clip"

    def __init__(self, name: str, backbone: Backbone, options: Mapping[str, Any]):
        self.info = MethodInfo(name=name)
        self.backbone = backbone
        self.device = backbone.device
        self.fiq_join = str(options.get("fiq_join", "both-orders"))
        self.batch_size = int(options.get("batch_size", 256))

    def eval_config(self) -> dict[str, Any]:
        return {"fiq_join": self.fiq_join}

    def _text_features(self, queries: Sequence[Query], benchmark: str, refs: torch.Tensor) -> torch.Tensor:
        variants = [modification_variants(q, benchmark, self.fiq_join) for q in queries]

        def encode(texts: list[str], _refs: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.backbone.encode_text(texts[s]) for s in batched(len(texts), self.batch_size)])

        return average_variants(encode, variants, refs)


class ImageOnly(_Baseline):
    def eval_config(self) -> dict[str, Any]:
        return {}

    def encode_queries(self, queries: Sequence[Query], reference_features: torch.Tensor, benchmark: str):
        return F.normalize(reference_features.float(), dim=-1)


class TextOnly(_Baseline):
    def encode_queries(self, queries: Sequence[Query], reference_features: torch.Tensor, benchmark: str):
        return self._text_features(queries, benchmark, reference_features)


class ImageText(_Baseline):
    def encode_queries(self, queries: Sequence[Query], reference_features: torch.Tensor, benchmark: str):
        text = self._text_features(queries, benchmark, reference_features)
        return F.normalize(F.normalize(reference_features.float(), dim=-1) + text, dim=-1)


class Random(_Baseline):
    """Random query vectors from a fixed seed: the floor every method must clear."""

    def __init__(self, name: str, backbone: Backbone, options: Mapping[str, Any]):
        super().__init__(name, backbone, options)
        self.seed = int(options.get("seed", 0))

    def eval_config(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def encode_queries(self, queries: Sequence[Query], reference_features: torch.Tensor, benchmark: str):
        # One generator per query id: the numbers do not depend on batch size or query order.
        dim = reference_features.shape[1]
        rows = [
            torch.randn(
                dim,
                generator=torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(q.qid.encode())),
            )
            for q in queries
        ]
        return F.normalize(torch.stack(rows), dim=-1).to(reference_features.device)


def _factory(cls: type[_Baseline], name: str):
    def build(backbone: Backbone, checkpoint: Path | None, options: Mapping[str, Any]) -> _Baseline:
        return cls(name, backbone, options)

    return build


for _name, _cls, _text in (
    ("image-only", ImageOnly, "reference image feature alone"),
    ("text-only", TextOnly, "modification text feature alone"),
    ("image+text", ImageText, "sum of the normalised image and text features"),
    ("random", Random, "random query features (sanity floor)"),
):
    register_method(MethodEntry(name=_name, factory=_factory(_cls, _name), description=_text))
