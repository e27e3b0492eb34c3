"""The method contract: turn reference-image features and modification texts into query features.

Every method shares the frozen backbone image tower, so gallery and reference features are computed once per
(backbone, preprocessing, image list) by the feature cache and handed to methods *unnormalised*, the form
phi / IM2TEXT consume. A method returns L2-normalised query features; ranking is cosine similarity against the
L2-normalised gallery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from cirbench.backbones import Backbone
from cirbench.benchmarks.base import Query

# FashionIQ caption joining modes (BENCHMARKS.md §3, pitfalls): SEARLE/LinCIR strip '.?, ', join with " and "
# in both orders and average the two normalised features; Pic2Word uses "{c2} and {c1}" unstripped.
FIQ_JOIN_MODES = ("both-orders", "c1-and-c2", "c2-and-c1-raw")


class MethodError(RuntimeError):
    """A method that cannot be built: a missing or mismatched checkpoint, an unknown option."""


@dataclass
class MethodInfo:
    """What a result records about a method besides its numbers."""

    name: str
    variant: str = ""
    training_data: str = "none (training-free)"
    zero_shot: bool = True
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    train_meta: dict[str, Any] | None = None


class Method(Protocol):
    """What ``cirbench eval`` needs from a method."""

    info: MethodInfo
    preprocess: str  # "clip" or "targetpad"; part of the feature-cache key

    def eval_config(self) -> dict[str, Any]:
        """Everything about the method that changes the numbers (prompts, options, checkpoint hash)."""

    def encode_queries(
        self, queries: Sequence[Query], reference_features: torch.Tensor, benchmark: str
    ) -> torch.Tensor:
        """L2-normalised query features, one row per query, from unnormalised reference-image features."""


MethodFactory = Callable[[Backbone, "Path | None", Mapping[str, Any]], Method]


@dataclass
class MethodEntry:
    """A registered method: its factory plus what ``cirbench list`` shows."""

    name: str
    factory: MethodFactory
    description: str
    needs_checkpoint: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    # checkpoint path -> backbone id, for methods whose released checkpoint implies its backbone.
    infer_backbone: Callable[[Path], str] | None = None


def modification_variants(query: Query, benchmark: str, fiq_join: str = "both-orders") -> list[str]:
    """The modification text(s) of a query; a method encodes each and averages the normalised features.

    FashionIQ has two captions per query (joined per ``fiq_join``); CIRCO may carry its shared concept as a
    second text when the protocol asks for it; every other benchmark has one text.
    """
    texts = query.texts
    if benchmark == "fashioniq" and len(texts) == 2:
        c1, c2 = texts
        if fiq_join == "both-orders":
            a, b = c1.strip(".?, "), c2.strip(".?, ")
            return [f"{a} and {b}", f"{b} and {a}"]
        if fiq_join == "c1-and-c2":
            return [f"{c1.strip('.?, ')} and {c2.strip('.?, ')}"]
        if fiq_join == "c2-and-c1-raw":
            return [f"{c2} and {c1}"]
        raise MethodError(f"unknown FashionIQ caption join {fiq_join!r}; choose one of {FIQ_JOIN_MODES}")
    if benchmark == "circo" and len(texts) == 2:
        shared_concept, relative_caption = texts
        return [f"{relative_caption}, {shared_concept}"]
    return [texts[0]]


def average_variants(
    encode: Callable[[list[str], torch.Tensor], torch.Tensor],
    variants: Sequence[Sequence[str]],
    reference_features: torch.Tensor,
) -> torch.Tensor:
    """Encode every query's text variants and average their normalised features (SEARLE/LinCIR FashionIQ rule).

    ``encode(texts, refs)`` returns unnormalised features for aligned lists of texts and reference features.
    Queries with one variant reduce to plain normalisation.
    """
    flat_texts: list[str] = []
    owner: list[int] = []
    for i, texts in enumerate(variants):
        flat_texts.extend(texts)
        owner.extend([i] * len(texts))
    index = torch.tensor(owner, device=reference_features.device)
    feats = F.normalize(encode(flat_texts, reference_features[index]).float(), dim=-1)
    index = index.to(feats.device)
    summed = torch.zeros(len(variants), feats.shape[1], device=feats.device).index_add_(0, index, feats)
    return F.normalize(summed, dim=-1)


def batched(n: int, batch_size: int) -> list[slice]:
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
