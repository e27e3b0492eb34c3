"""``mllm-embedder``: a Qwen2-VL-family embedder (GME, VLM2Vec-V2) with a prompt template and last-token pooling.

``-o preset=gme`` or ``vlm2vec-v2`` fills every template option with that embedder's published values; any option
given overrides its preset value. The query is the reference image and the text in the query template; the gallery
is the model's own document embeddings (``gallery="own"``), so it reads the reference *images*.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from cirbench.backbones import BackboneIdentity
from cirbench.benchmarks.base import Query
from cirbench.embedders.hub import ModelSource, parse_source
from cirbench.embedders.mllm import PADDING_SIDES, POSITIONS, PRESETS, MLLMEncoder, MLLMSettings, load_mllm
from cirbench.embedders.mllm import mllm_identity as _identity
from cirbench.methods import METHODS
from cirbench.methods.base import BATCH_SIZE, CAPTION_JOIN, Method, MethodEntry, OwnEncoder, batched
from cirbench.methods.hf_clip import PRECISION, REVISION, TRAINED_ON, ZERO_SHOT, embedder_info
from cirbench.options import Option

FROM_PRESET = "(default: the preset's)"
PRESET = "preset"  # a choice option's default: take the preset's value
SETTING_OPTIONS = (
    Option("query_template", "str", None, f"query prompt with {{instruction}} and {{text}} {FROM_PRESET}"),
    Option("document_template", "str", None, f"gallery prompt with {{instruction}} {FROM_PRESET}"),
    Option("instruction", "str", None, f"query instruction / system prompt {FROM_PRESET}"),
    Option("document_instruction", "str", None, f"gallery instruction / system prompt {FROM_PRESET}"),
    Option("padding_side", "choice", PRESET, f"tokenizer padding {FROM_PRESET}", (PRESET, *PADDING_SIDES), keyed=False),
    Option(
        "positions",
        "choice",
        PRESET,
        f"mrope (model's 3-D), sequential (GME's code) {FROM_PRESET}",
        (PRESET, *POSITIONS),
    ),
    Option("min_pixels", "int", None, f"image pixel floor, 0 = the processor's {FROM_PRESET}", minimum=0),
    Option("max_pixels", "int", None, f"image pixel cap, 0 = the processor's {FROM_PRESET}", minimum=0),
    Option("resize_to_factor", "bool", None, f"resize images to multiples of 28 first (GME) {FROM_PRESET}"),
    Option("max_length", "int", None, f"token truncation, 0 = none {FROM_PRESET}", minimum=0),
    Option("strip", "bool", None, f"strip each formatted prompt {FROM_PRESET}"),
)
OPTIONS = (
    Option("model", "str", None, "a local HF model folder (or LoRA adapter folder) or a hub id"),
    REVISION,
    Option("base_model", "str", None, "a LoRA adapter's base model: folder or hub id (VLM2Vec-V2: Qwen2-VL-2B)"),
    Option("base_revision", "str", None, "the base model's hub revision"),
    Option("preset", "choice", "vlm2vec-v2", "published settings the other options start from", tuple(PRESETS)),
    *SETTING_OPTIONS,
    PRECISION,
    replace(CAPTION_JOIN, default="c1-and-c2"),
    replace(BATCH_SIZE, default=16, help="queries or images per forward pass (does not change the numbers)"),
    TRAINED_ON,
    ZERO_SHOT,
)


def settings_of(options: Mapping[str, Any]) -> MLLMSettings:
    """The preset's settings with every option the user gave in place of its value."""
    preset = PRESETS[options.get("preset") or "vlm2vec-v2"]
    given = {o.name: options[o.name] for o in SETTING_OPTIONS if options.get(o.name) not in (None, PRESET)}
    settings = replace(preset, **given)
    settings.check()
    return settings


def _sources(options: Mapping[str, Any]) -> tuple[ModelSource, ModelSource | None]:
    source = parse_source(options.get("model"), options.get("revision"))
    base = options.get("base_model")
    return source, parse_source(base, options.get("base_revision"), "base_model") if base else None


def identify(options: Mapping[str, Any]) -> BackboneIdentity:
    source, base = _sources(options)
    return _identity(source, base, settings_of(options), options.get("precision") or "fp32")


def load(options: Mapping[str, Any], device: str, allow_download: bool) -> MLLMEncoder:
    source, base = _sources(options)
    return load_mllm(source, base, settings_of(options), options.get("precision") or "fp32", device, allow_download)


class MLLMQuery(Method):
    """Queries of an ``MLLMEncoder``: one prompt per text variant with the reference image, pooled, normalised,
    averaged over variants."""

    preprocess = "clip"

    def __init__(self, encoder: MLLMEncoder, options: Mapping[str, Any]):
        self.encoder = encoder
        self.options = dict(options)
        source, _ = _sources(options)
        self.info = embedder_info("mllm-embedder", f"{options.get('preset')}: {source.name}", options)
        self.caption_join = str(self.options["fiq_join"])
        self.batch_size = int(self.options["batch_size"])

    def describe(self) -> dict[str, Any]:
        keep = ("model", "revision", "base_model", "base_revision", "preset", "precision")
        return {
            **{k: self.options.get(k) for k in keep},
            "weights_id": self.encoder.weights_id,
            **asdict(self.encoder.settings),
        }

    def encode_queries(self, queries: Sequence[Query], texts: Sequence[Sequence[str]], references: Any) -> torch.Tensor:
        """``references``: one RGB PIL image per query; every text variant is encoded with its query's image."""
        flat, owner = [], []
        for i, variants in enumerate(texts):
            flat.extend(variants)
            owner.extend([i] * len(variants))
        prompts = self.encoder.query_prompts(flat)
        images = [self.encoder.preprocess(references[i]) for i in owner]
        rows = [
            torch.nn.functional.normalize(self.encoder.embed(prompts[s], images[s]), dim=-1)
            for s in batched(len(prompts), self.batch_size)
        ]
        feats = torch.cat(rows)
        index = torch.tensor(owner, device=feats.device)
        summed = torch.zeros(len(texts), feats.shape[1], device=feats.device).index_add_(0, index, feats)
        return torch.nn.functional.normalize(summed, dim=-1)


def build(encoder: MLLMEncoder, checkpoint: Path | None, options: Mapping[str, Any]) -> MLLMQuery:
    return MLLMQuery(encoder, options)


METHODS.register(
    MethodEntry(
        name="mllm-embedder",
        factory=build,
        description="MLLM embedder (Qwen2-VL family: GME, VLM2Vec-V2): prompt template, last-token pooling",
        options=OPTIONS,
        inputs="reference_images",
        gallery="own",
        encoder=OwnEncoder(identify, load),
    )
)
