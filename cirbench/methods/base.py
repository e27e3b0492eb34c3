"""The method contract: what a method consumes, what encodes the gallery, and its capabilities, all declared.

A registered method is a ``MethodEntry`` (typed options, factory, checkpoint identity) whose factory builds a
``Method``. The entry declares, before anything is loaded:
- ``inputs``: the gallery encoder's *unnormalised* reference features (what phi / IM2TEXT consume; the default) or
  the reference **images** (a joint image+text encoder, e.g. an MLLM embedder);
- ``gallery``: the shared open_clip backbone encodes the gallery (the default) or the method's ``OwnEncoder``, whose
  identity then takes the backbone's place in the feature-cache and run keys;
- ``benchmark_defaults``: option values a benchmark's published protocol uses for this method (Slerp's alpha).
The built ``Method`` declares the rest (score fusion, early query checks, placeholder) with defaults on the base
class. A method returns L2-normalised query features; ranking is cosine similarity against the L2-normalised
gallery. Methods never see benchmark names: the benchmark turns each query into the text(s) to encode
(``Benchmark.query_texts``), following the method's ``caption_join``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

import torch
import torch.nn.functional as F

from cirbench.backbones import BackboneIdentity
from cirbench.benchmarks.base import CAPTION_JOINS, Query
from cirbench.errors import MethodError, RegistryError
from cirbench.identity import file_sha256
from cirbench.methods.preprocessing import PREPROCESS_KINDS
from cirbench.options import Option, parse_options

if TYPE_CHECKING:
    from cirbench.encoders import GalleryEncoder

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
    zero_shot: bool | None = True  # None: not known (an embedder whose training data its card does not list)
    checkpoint: str | None = None
    checkpoint_id: str | None = None
    train_meta: dict[str, Any] | None = None


def released_checkpoint_info(name: str, variant: str, training_data: str, path: Path) -> MethodInfo:
    """What a result records about a released checkpoint (its file hash identifies it)."""
    return MethodInfo(name, variant, training_data, True, str(path), file_sha256(path))


QueryInput = Literal["reference_features", "reference_images"]
GalleryKind = Literal["backbone", "own"]
QUERY_INPUTS: tuple[str, ...] = get_args(QueryInput)
GALLERY_KINDS: tuple[str, ...] = get_args(GalleryKind)


class Method:
    """Base class of every built method: the capabilities evaluation reads, each declared here with its default.

    ``encode_queries(queries, texts, references)`` returns L2-normalised query features, one row per query:
    ``texts[i]`` are query i's text variants (their normalised features are averaged), and ``references`` are what
    the method's entry says it consumes (``MethodEntry.inputs``): the gallery encoder's unnormalised features of the
    reference images (a tensor, rows aligned with ``queries``), or the reference images themselves (a list of RGB
    PIL images, opened by the benchmark's reader, so GeneCIS crops are honoured).

    Capabilities (override to use):
    - ``fuses_scores``: rank by ``fuse(s_image, s_text)`` of two similarity matrices (``encode_modalities``), not
      by one query embedding (FreeDom's product, a weighted sum of similarities);
    - ``check_queries(queries)``: refuse queries it cannot encode before any image is encoded; ``check_split``
      the same over the whole split, before ``--limit`` and ``--skip-missing`` leave queries out;
    - ``placeholder``: the character a pseudo-token prompt reserves (results count the texts holding it).
    """

    info: MethodInfo
    preprocess: str = "clip"  # "clip" or "targetpad" (part of the feature-cache key); own encoders: "clip"
    caption_join: str = "both-orders"  # one of CAPTION_JOINS: how a benchmark joins several captions
    placeholder: str | None = None
    fuses_scores: ClassVar[bool] = False

    def describe(self) -> dict[str, Any]:
        """How the method builds its queries (prompts, mapper sizes): recorded with every result, not hashed."""
        return {}

    def check_queries(self, queries: Sequence[Query]) -> None:
        """Raise a ``UserError`` for queries this method cannot encode (default: every query is fine)."""

    def check_split(self, queries: Sequence[Query]) -> None:
        """Like ``check_queries`` over the whole split, before any query is left out (default: nothing)."""

    def encode_queries(self, queries: Sequence[Query], texts: Sequence[Sequence[str]], references: Any) -> torch.Tensor:
        raise NotImplementedError

    def encode_modalities(
        self, queries: Sequence[Query], texts: Sequence[Sequence[str]], references: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``fuses_scores`` methods: L2-normalised (image, text) query features, one row per query each."""
        raise NotImplementedError

    def fuse(self, image_scores: torch.Tensor, text_scores: torch.Tensor) -> torch.Tensor:
        """``fuses_scores`` methods: element-wise fusion of the two cosine matrices into ranking scores."""
        raise NotImplementedError


@dataclass(frozen=True)
class OwnEncoder:
    """A method's own gallery encoder (``MethodEntry.gallery == "own"``).

    ``identify(options)`` names its weights without loading them (it enters the run and feature-cache keys, as a
    backbone's identity does); ``load(options, device, allow_download)`` returns the ``GalleryEncoder`` that
    encodes the gallery and that the method's factory receives in place of a backbone.
    """

    identify: Callable[[Mapping[str, Any]], BackboneIdentity]
    load: Callable[[Mapping[str, Any], str, bool], GalleryEncoder]


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
    inputs: QueryInput = "reference_features"
    gallery: GalleryKind = "backbone"
    encoder: OwnEncoder | None = None  # required when ``gallery == "own"``
    benchmark_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.inputs not in QUERY_INPUTS:
            raise RegistryError(f"method {self.name!r}: inputs {self.inputs!r} is not one of {', '.join(QUERY_INPUTS)}")
        if self.gallery not in GALLERY_KINDS:
            raise RegistryError(
                f"method {self.name!r}: gallery {self.gallery!r} is not one of {', '.join(GALLERY_KINDS)}"
            )
        if (self.gallery == "own") != (self.encoder is not None):
            raise RegistryError(f"method {self.name!r}: an OwnEncoder is given exactly when gallery is 'own'")
        for bench, values in self.benchmark_defaults.items():  # typed like a user's options, at registration
            self.parse_options(values, f"method {self.name} (benchmark_defaults for {bench})")

    def defaults_for(self, benchmark: str) -> dict[str, Any]:
        """Option values the published protocol of ``benchmark`` uses for this method (a user's own override)."""
        return dict(self.benchmark_defaults.get(benchmark, {}))

    def parse_options(self, options: Mapping[str, Any] | None, owner: str = "") -> dict[str, Any]:
        return parse_options(self.options, options, owner or f"method {self.name}")


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
