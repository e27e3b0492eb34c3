"""``hf-clip``: a Hugging Face CLIP-layout dual encoder with a joint query (BGE-VL, UniIR CLIP_SF, plain CLIP).

The query is the fusion of the text features and the reference image's features (``-o fusion``: raw sum then
normalise, BGE-VL/CLIP_SF/mteb's CLIP wrapper; or each part normalised first); the gallery is the model's own
normalised image features, so the entry brings its own encoder (``gallery="own"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from cirbench.backbones import BackboneIdentity
from cirbench.benchmarks.base import Query
from cirbench.embedders.hf_clip import FUSIONS, HFClipEncoder, clip_identity, fuse, load_clip
from cirbench.embedders.hub import PRECISIONS, parse_source
from cirbench.methods import METHODS
from cirbench.methods.base import (
    BATCH_SIZE,
    CAPTION_JOIN,
    Method,
    MethodEntry,
    MethodInfo,
    OwnEncoder,
    average_variants,
    batched,
)
from cirbench.options import Option

MODEL = Option("model", "str", None, "a local HF CLIPModel folder or a hub id (e.g. BAAI/BGE-VL-base)")
REVISION = Option("revision", "str", None, "hub revision (a 40-hex commit pins the weights); hub ids only")
PRECISION = Option("precision", "choice", "fp32", "weights and activations dtype", tuple(PRECISIONS))
TRAINED_ON = Option(
    "trained_on", "str", "", "the model's training data as its card says (recorded, not hashed)", keyed=False
)
ZERO_SHOT = Option(
    "zero_shot", "bool", True, "false when the model was trained on this benchmark's train split", keyed=False
)


def embedder_info(name: str, source_name: str, options: Mapping[str, Any]) -> MethodInfo:
    """What a result records: the model (and revision) as the variant, the training data the user declared."""
    revision = options.get("revision")
    trained = options.get("trained_on") or "not declared (see the model card; -o trained_on=...)"
    return MethodInfo(
        name=name,
        variant=source_name + (f"@{revision}" if revision else ""),
        training_data=trained,
        zero_shot=bool(options.get("zero_shot", True)),
    )


OPTIONS = (
    MODEL,
    REVISION,
    Option(
        "fusion",
        "choice",
        "sum-raw",
        "sum-raw: text+image raw then normalise; sum-normalised: each first",
        FUSIONS,
        varies=True,  # BGE-VL/CLIP_SF/mteb's CLIP sum raw, mteb's BLIP and image+text normalise first
    ),
    Option("max_text_tokens", "int", 77, "text truncation, start/end tokens included (BGE-VL eval 75)", minimum=2),
    PRECISION,
    replace(CAPTION_JOIN, default="c1-and-c2"),
    BATCH_SIZE,
    TRAINED_ON,
    ZERO_SHOT,
)


def identify(options: Mapping[str, Any]) -> BackboneIdentity:
    return clip_identity(parse_source(options.get("model"), options.get("revision")), options.get("precision", "fp32"))


def load(options: Mapping[str, Any], device: str, allow_download: bool) -> HFClipEncoder:
    source = parse_source(options.get("model"), options.get("revision"))
    return load_clip(
        source, options.get("precision", "fp32"), device, allow_download, int(options.get("max_text_tokens", 77))
    )


class HFClipQuery(Method):
    """Queries of an ``HFClipEncoder``: ``fuse(text, reference image)``, averaged over text variants."""

    preprocess = "clip"

    def __init__(self, encoder: HFClipEncoder, options: Mapping[str, Any]):
        self.encoder = encoder
        self.options = dict(options)
        self.info = embedder_info("hf-clip", parse_source(options.get("model"), options.get("revision")).name, options)
        self.caption_join = str(self.options["fiq_join"])
        self.batch_size = int(self.options["batch_size"])

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.options["model"],
            "revision": self.options.get("revision"),
            "weights_id": self.encoder.weights_id,
            "fusion": self.options["fusion"],
            "max_text_tokens": self.options["max_text_tokens"],
            "precision": self.options["precision"],
        }

    def encode_queries(
        self, queries: Sequence[Query], texts: Sequence[Sequence[str]], references: torch.Tensor
    ) -> torch.Tensor:
        fusion = self.options["fusion"]

        def encode(flat: list[str], refs: torch.Tensor) -> torch.Tensor:
            text = torch.cat([self.encoder.encode_text(flat[s]) for s in batched(len(flat), self.batch_size)])
            return fuse(text, refs.to(text.device).float(), fusion)

        return average_variants(encode, texts, references)


def build(encoder: HFClipEncoder, checkpoint: Path | None, options: Mapping[str, Any]) -> HFClipQuery:
    return HFClipQuery(encoder, options)


METHODS.register(
    MethodEntry(
        name="hf-clip",
        factory=build,
        description="HF CLIP-layout dual encoder, query = fused text + reference image (BGE-VL, UniIR CLIP_SF)",
        options=OPTIONS,
        inputs="reference_features",
        gallery="own",
        encoder=OwnEncoder(identify, load),
    )
)
