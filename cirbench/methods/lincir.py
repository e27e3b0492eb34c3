"""LinCIR (Gu et al., CVPR 2024) for evaluation: phi on the unnormalised reference-image embedding fills ``$``.

Upstream inference (LINCIR.md §9): ``a photo of $ that {caption}`` for CIRR, CIRCO and GeneCIS (and the shapes
benchmark); FashionIQ strips ``.?, `` from both captions, joins them with `` and `` in both orders and averages the
two normalised query features. The prompt is tokenized literally as upstream's ``clip.tokenize`` does (the template's
free-standing ``$`` is id 259); ``tokenization: split`` instead cuts the text at every ``$`` (cirbench's
``tokenize_with_placeholder``), which differs only for captions holding ``$`` next to punctuation.

Checkpoints: a cirbench run directory (``phi_best.safetensors``, else ``phi_last.safetensors``), a cirbench
``.safetensors`` file, or an official ``.pt`` (``{"Phi": state_dict}``, e.g. ``lincir_large.pt``). A run's
``train_meta.json`` travels into ``info.train_meta`` so training time reaches results and leaderboards.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cirbench.backbones import Backbone, tensors_sha256
from cirbench.benchmarks.base import Query
from cirbench.methods import register_method
from cirbench.methods.base import (
    MethodEntry,
    MethodError,
    MethodInfo,
    modification_variants,
)
from cirbench.methods.pseudo_token import PseudoTokenMethod

LINCIR_TEMPLATE = "a photo of $ that {caption}"
PLACEHOLDER, PLACEHOLDER_ID = "$", 259
CHECKPOINT_NAMES = ("phi_best.safetensors", "phi_last.safetensors")
OFFICIAL_TRAINING_DATA = (
    "text only: CC3M captions + Stable Diffusion prompts (paper); the public code adds Midjourney prompts "
    "(official release checkpoint)"
)
# phi input width -> backbone of the official release / paper (LINCIR.md §1).
OFFICIAL_BACKBONES = {
    768: "ViT-L-14:openai",
    1024: "ViT-H-14:laion2b_s32b_b79k",
    1280: "ViT-bigG-14:laion2b_s39b_b160k",
}
LINCIR_DEFAULTS: dict[str, Any] = {
    "prompt": LINCIR_TEMPLATE,
    "fiq_join": "both-orders",
    "tokenization": "literal",
    "batch_size": 256,
    "preprocess": "clip",
    "strict_backbone": True,
}


def resolve_checkpoint(path: Path | str) -> Path:
    """The phi file of ``path``: itself, or in a run directory ``phi_best`` before ``phi_last``."""
    path = Path(path).expanduser()
    if path.is_dir():
        for name in CHECKPOINT_NAMES:
            if (path / name).is_file():
                return path / name
        raise MethodError(f"run directory {path} holds no {' or '.join(CHECKPOINT_NAMES)} (has training finished?)")
    if not path.is_file():
        raise MethodError(f"lincir checkpoint {path} does not exist")
    return path


def read_train_meta(checkpoint: Path) -> dict[str, Any] | None:
    """``train_meta.json`` of the run a checkpoint belongs to (same directory or its parent), if any."""
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        meta = folder / "train_meta.json"
        if meta.is_file():
            try:
                return json.loads(meta.read_text())
            except json.JSONDecodeError as error:
                raise MethodError(f"{meta} is not valid JSON: {error}") from error
    return None


def infer_backbone(checkpoint: Path | str) -> str:
    """Backbone of a checkpoint: recorded in cirbench safetensors; official ``.pt`` by phi's input width."""
    from cirbench.lincir.phi import dims_from_state_dict, load_official, load_safetensors

    path = resolve_checkpoint(checkpoint)
    if path.suffix == ".safetensors":
        state, metadata = load_safetensors(path)
        if metadata.get("backbone"):
            return metadata["backbone"]
    else:
        state = load_official(path)
    d_in = dims_from_state_dict(state)[0]
    if d_in not in OFFICIAL_BACKBONES:
        raise MethodError(f"cannot infer the backbone of {path} (phi takes {d_in}-d features); pass --backbone")
    return OFFICIAL_BACKBONES[d_in]


class LinCIR(PseudoTokenMethod):
    """Query encoder: ``phi(image embedding)`` replaces every id 259 of the prompt in the text tower."""

    placeholder, placeholder_id = PLACEHOLDER, PLACEHOLDER_ID

    def __init__(self, backbone: Backbone, phi: torch.nn.Module, info: MethodInfo, options: Mapping[str, Any]) -> None:
        self.options = dict(options)
        phi = phi.float().eval().requires_grad_(False)
        super().__init__(backbone, phi, info, str(self.options["preprocess"]), int(self.options["batch_size"]))
        self.template = str(self.options["prompt"])
        self.fiq_join = str(self.options["fiq_join"])
        self.tokenization = str(self.options["tokenization"])
        if "{caption}" not in self.template or PLACEHOLDER not in self.template:
            raise MethodError(f"lincir prompt {self.template!r} needs a {PLACEHOLDER!r} slot and '{{caption}}'")
        if self.tokenization not in ("literal", "split"):
            raise MethodError(f"lincir tokenization must be 'literal' or 'split', got {self.tokenization!r}")

    def eval_config(self) -> dict[str, Any]:
        d_in, hidden, d_out = (
            self.mapper.layers[0].in_features,
            self.mapper.layers[0].out_features,
            self.mapper.layers[6].out_features,
        )
        return {
            "checkpoint_sha256": self.info.checkpoint_sha256,
            "mapper": f"phi {d_in}-{hidden}-{hidden}-{d_out}",
            "mapper_input": "unnormalised image embedding",
            "prompt": self.template,
            "placeholder": f"{PLACEHOLDER} ({PLACEHOLDER_ID})",
            "tokenization": self.tokenization,
            "fiq_join": self.fiq_join,
            "preprocess": self.preprocess,
        }

    @property
    def phi(self) -> torch.nn.Module:
        return self.mapper

    def prompts(self, query: Query, benchmark: str) -> list[str]:
        return [self.template.format(caption=t) for t in modification_variants(query, benchmark, self.fiq_join)]

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """``literal`` tokenizes the prompt as upstream's ``clip.tokenize`` does; ``split`` inserts id 259."""
        if self.tokenization == "split":
            return super().tokenize(prompts)
        tokens = self.backbone.tokenize(prompts)
        lost = (tokens == PLACEHOLDER_ID).sum(dim=1) == 0
        if bool(lost.any()):
            raise MethodError(f"prompt lost its {PLACEHOLDER!r} slot: {prompts[int(lost.nonzero()[0])]!r}")
        return tokens


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(LINCIR_DEFAULTS))
    if unknown:
        raise MethodError(f"unknown option(s) {', '.join(unknown)} for lincir; known: {', '.join(LINCIR_DEFAULTS)}")
    return {**LINCIR_DEFAULTS, **options}


def method_from_phi(
    backbone: Backbone, phi: torch.nn.Module, options: Mapping[str, Any] | None = None, info: MethodInfo | None = None
) -> LinCIR:
    """A LinCIR method around an in-memory phi (training-time model selection)."""
    info = info or MethodInfo(name="lincir", variant="in-training", training_data="text only")
    return LinCIR(backbone, phi, info, check_options(options or {}))


def build_lincir(backbone: Backbone, checkpoint: Path | str | None, options: Mapping[str, Any]) -> LinCIR:
    """The ``lincir`` method from a run directory, a cirbench ``.safetensors`` or an official ``.pt``."""
    from cirbench.lincir.phi import load_phi

    if checkpoint is None:
        raise MethodError(
            "lincir needs --checkpoint: a run directory of `cirbench train lincir`, its .safetensors, "
            "or the official lincir_large.pt (see methods/lincir-vit-l-14.yaml)"
        )
    opts = check_options(options)
    path = resolve_checkpoint(checkpoint)
    phi, metadata = load_phi(
        path,
        embed_dim=backbone.embed_dim,
        token_dim=backbone.token_dim,
        backbone=backbone.id if opts["strict_backbone"] else None,
    )
    train_meta = read_train_meta(path) if metadata.get("format") != "official" else None
    if metadata.get("format") == "official":
        variant, training = "official checkpoint", OFFICIAL_TRAINING_DATA
    else:
        variant = f"cirbench run, step {metadata.get('step', '?')}"
        corpora = (train_meta or {}).get("corpora") or json.loads(metadata.get("recipe", "{}")).get("corpora")
        labels = [c.get("spec", str(c)) if isinstance(c, dict) else str(c) for c in corpora or []]
        training = "text only: " + (", ".join(labels) if labels else "unknown corpus")
    info = MethodInfo(
        name="lincir",
        variant=variant,
        training_data=training,
        zero_shot=True,
        checkpoint=str(path),
        # phi's tensors, not the file: its metadata (corpus paths, checkpoint cadence) must not change run keys.
        checkpoint_sha256=tensors_sha256(phi.state_dict()),
        train_meta=train_meta,
    )
    return LinCIR(backbone, phi, info, opts)


register_method(
    MethodEntry(
        name="lincir",
        factory=build_lincir,
        description="LinCIR (CVPR 2024): phi trained on text alone (SMP), 'a photo of $ that {caption}'",
        needs_checkpoint=True,
        options=dict(LINCIR_DEFAULTS),
        infer_backbone=infer_backbone,
    )
)
