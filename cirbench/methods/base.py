"""The method contract: turn reference-image features and modification texts into query features.

Every method shares the frozen backbone image tower, so gallery and reference features are computed once per
(backbone, preprocessing, image list) by the feature cache and handed to methods *unnormalised*, the form
phi / IM2TEXT consume. A method returns L2-normalised query features; ranking is cosine similarity against the
L2-normalised gallery. Methods never see benchmark names: the benchmark turns each query into the text(s) to
encode (``Benchmark.query_texts``), following the method's ``caption_join``. Two optional capabilities: score
fusion (``FusesScores``, ranked by ``fuse(s_image, s_text)`` instead of one embedding) and ``check_queries(queries)``
(refuse queries it cannot encode before any image is encoded).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from cirbench.benchmarks.base import CAPTION_JOINS, Query
from cirbench.errors import MethodError
from cirbench.identity import file_sha256
from cirbench.methods.preprocessing import PREPROCESS_KINDS
from cirbench.options import Option, parse_options

# Options most methods share, declared once.
BATCH_SIZE = Option(
    "batch_size", "int", 256, "texts per forward pass (does not change the numbers)", minimum=1, keyed=False
)
CAPTION_JOIN = Option(
    "fiq_join", "choice", "both-orders", "how several captions (FashionIQ) are joined", CAPTION_JOINS, varies=True
)


def preprocess_option(default: str) -> Option:
    return Option(
        "preprocess",
        "choice",
        default,
        "image preprocessing (part of the feature-cache key)",
        PREPROCESS_KINDS,
        varies=True,  # SEARLE pads to a square, Pic2Word and LinCIR crop: papers mix them
    )


@dataclass
class MethodInfo:
    """What a result records about a method besides its numbers."""

    name: str
    variant: str = ""
    training_data: str = "none (training-free)"
    zero_shot: bool = True
    checkpoint: str | None = None
    checkpoint_id: str | None = None
    train_meta: dict[str, Any] | None = None


def released_checkpoint_info(name: str, variant: str, training_data: str, path: Path) -> MethodInfo:
    """What a result records about a released checkpoint (its file hash identifies it)."""
    return MethodInfo(name, variant, training_data, True, str(path), file_sha256(path))


class Method(Protocol):
    """What evaluation needs from a built method."""

    info: MethodInfo
    preprocess: str  # "clip" or "targetpad"; part of the feature-cache key
    caption_join: str  # one of CAPTION_JOINS: how a benchmark joins several captions for this method

    def describe(self) -> dict[str, Any]:
        """How the method builds its queries (prompts, mapper sizes): recorded with every result, not hashed."""

    def encode_queries(
        self, queries: Sequence[Query], texts: Sequence[Sequence[str]], reference_features: torch.Tensor
    ) -> torch.Tensor:
        """L2-normalised query features, one row per query: ``texts[i]`` are query i's text variants (their
        normalised features are averaged), ``reference_features`` the unnormalised reference-image features."""


class FusesScores(Protocol):
    """Optional capability: rank by fusing an image and a text similarity matrix, not by one query embedding.

    Score-level baselines (FreeDom's ``Text x Image`` product, a weighted sum of similarities) have no single query
    vector, so a method that has ``encode_modalities`` and ``fuse`` is ranked by the engine with
    ``fuse(s_image, s_text)``, where ``s = normalised query modality @ normalised gallery`` (split-wide galleries,
    chunked with the reference excluded, and per-query candidate lists alike). Its ``encode_queries`` is not used.
    """

    def encode_modalities(
        self, queries: Sequence[Query], texts: Sequence[Sequence[str]], reference_features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised (image, text) query features, one row per query each."""

    def fuse(self, image_scores: torch.Tensor, text_scores: torch.Tensor) -> torch.Tensor:
        """Element-wise fusion of the two cosine matrices (queries x candidates) into ranking scores."""


def fuses_scores(method: Any) -> bool:
    """Whether ``method`` ranks by fused similarities (``FusesScores``) rather than by a query embedding."""
    return callable(getattr(method, "encode_modalities", None)) and callable(getattr(method, "fuse", None))


MethodFactory = Callable[[Any, "Path | None", Mapping[str, Any]], Method]


def default_checkpoint(path: Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        kind = "is a directory, not a checkpoint file" if path.is_dir() else "does not exist"
        raise MethodError(f"checkpoint {path} {kind}")
    return path


def default_checkpoint_id(path: Path) -> str:
    """The sha256 of the checkpoint file's bytes."""
    return file_sha256(path)


@dataclass(frozen=True)
class MethodEntry:
    """A registered method: its typed options, its factory and what identifies a checkpoint.

    ``version`` changes when the method's query construction changes (it is part of every run key).
    ``locate_checkpoint`` turns what a user passes (a run directory, say) into the file read;
    ``checkpoint_id`` identifies that file's weights without building the method; ``infer_backbone`` reads the
    backbone a released checkpoint implies.
    """

    name: str
    factory: MethodFactory
    description: str
    options: tuple[Option, ...] = ()
    version: str = "1"
    needs_checkpoint: bool = False
    locate_checkpoint: Callable[[Path], Path] = default_checkpoint
    checkpoint_id: Callable[[Path], str] = default_checkpoint_id
    infer_backbone: Callable[[Path], str] | None = None
    checkpoint_hint: str = "see its card in methods/"
    extra: dict[str, Any] = field(default_factory=dict)

    def parse_options(self, options: Mapping[str, Any] | None) -> dict[str, Any]:
        return parse_options(self.options, options, f"method {self.name}")


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
