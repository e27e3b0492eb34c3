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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cirbench.errors import MethodError
from cirbench.methods import METHODS
from cirbench.methods.base import BATCH_SIZE, CAPTION_JOIN, MethodEntry, MethodInfo, preprocess_option
from cirbench.methods.pseudo_token import PseudoTokenMethod
from cirbench.options import Option, parse_options
from cirbench.phi import dims_from_state_dict, load_phi, phi_weights_id, read_phi_file
from cirbench.run_digests import checked_checkpoint

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


def _check_prompt(prompt: str) -> str | None:
    if "{caption}" not in prompt or PLACEHOLDER not in prompt:
        return f"a prompt with a {PLACEHOLDER!r} slot and '{{caption}}'"
    try:
        prompt.format(caption="")
    except (KeyError, IndexError, ValueError):
        return "a prompt whose only field is {caption} (write a literal brace as {{ or }})"
    return None


OPTIONS = (
    Option("prompt", "str", LINCIR_TEMPLATE, "the query prompt ($ = the pseudo word)", check=_check_prompt),
    CAPTION_JOIN,
    Option(
        "tokenization",
        "choice",
        "literal",
        "literal: as upstream's clip.tokenize; split: cut at every $",
        ("literal", "split"),
        varies=True,
    ),
    BATCH_SIZE,
    preprocess_option("clip"),
    Option("strict_backbone", "bool", True, "refuse a cirbench phi trained on another backbone", keyed=False),
)


def resolve_checkpoint(path: Path | str) -> Path:
    """The phi file of ``path``: itself, or in a run directory ``phi_best`` before ``phi_last``."""
    path = Path(path).expanduser()
    if path.is_dir():
        for name in CHECKPOINT_NAMES:
            if (path / name).is_file():
                return checked_checkpoint(path / name)  # against its run's digests (cirbench.run_digests)
        raise MethodError(f"run directory {path} holds no {' or '.join(CHECKPOINT_NAMES)} (has training finished?)")
    if not path.is_file():
        raise MethodError(f"lincir checkpoint {path} does not exist")
    return checked_checkpoint(path)


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
    state, metadata = read_phi_file(resolve_checkpoint(checkpoint))
    if metadata.get("backbone"):
        return metadata["backbone"]
    d_in = dims_from_state_dict(state)[0]
    if d_in not in OFFICIAL_BACKBONES:
        raise MethodError(f"cannot infer the backbone of {checkpoint} (phi takes {d_in}-d features); pass --backbone")
    return OFFICIAL_BACKBONES[d_in]


class LinCIR(PseudoTokenMethod):
    """Query encoder: ``phi(image embedding)`` replaces every id 259 of the prompt in the text tower."""

    placeholder, placeholder_id = PLACEHOLDER, PLACEHOLDER_ID

    def __init__(self, backbone: Any, phi: torch.nn.Module, info: MethodInfo, options: Mapping[str, Any]) -> None:
        self.options = dict(options)
        phi = phi.float().eval().requires_grad_(False)
        super().__init__(backbone, phi, info, str(self.options["preprocess"]), int(self.options["batch_size"]))
        self.template = str(self.options["prompt"])
        self.caption_join = str(self.options["fiq_join"])
        self.tokenization = str(self.options["tokenization"])

    def describe(self) -> dict[str, Any]:
        d_in, hidden, d_out = self.mapper.dims
        return {
            "mapper": f"phi {d_in}-{hidden}-{hidden}-{d_out}",
            "mapper_input": "unnormalised image embedding",
            "prompt": self.template,
            "placeholder": f"{PLACEHOLDER} ({PLACEHOLDER_ID}), every one of each row",
            "tokenization": self.tokenization,
            "fiq_join": self.caption_join,
            "preprocess": self.preprocess,
        }

    @property
    def phi(self) -> torch.nn.Module:
        return self.mapper


def method_from_phi(
    backbone: Any, phi: torch.nn.Module, options: Mapping[str, Any] | None = None, info: MethodInfo | None = None
) -> LinCIR:
    """A LinCIR method around an in-memory phi (training-time model selection)."""
    info = info or MethodInfo(name="lincir", variant="in-training", training_data="text only")
    return LinCIR(backbone, phi, info, parse_options(OPTIONS, options, "method lincir"))


def build_lincir(backbone: Any, checkpoint: Path | None, options: Mapping[str, Any]) -> LinCIR:
    """The ``lincir`` method from a phi file (a run directory is resolved to one by ``resolve_checkpoint``)."""
    path = Path(checkpoint)
    phi, metadata = load_phi(
        path,
        embed_dim=backbone.embed_dim,
        token_dim=backbone.token_dim,
        backbone=backbone.id if options["strict_backbone"] else None,
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
        checkpoint_id=phi_weights_id(path),
        train_meta=train_meta,
    )
    return LinCIR(backbone, phi, info, options)


METHODS.register(
    MethodEntry(
        name="lincir",
        factory=build_lincir,
        description="LinCIR (CVPR 2024): phi trained on text alone (SMP), 'a photo of $ that {caption}'",
        options=OPTIONS,
        needs_checkpoint=True,
        locate_checkpoint=resolve_checkpoint,
        checkpoint_id=phi_weights_id,
        infer_backbone=infer_backbone,
        checkpoint_hint=(
            "a run directory of `cirbench train lincir`, its .safetensors, or the official lincir_large.pt; "
            "see methods/lincir-vit-l-14.yaml"
        ),
    )
)
