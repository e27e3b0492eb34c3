"""SEARLE / SEARLE-XL (Baldrati, Agnolucci et al., ICCV 2023) from the released phi checkpoints.

phi maps the *unnormalised* CLIP image embedding of the reference image to one pseudo word token that replaces
``$`` in ``a photo of $ that {caption}``; the text tower's output is the query. FashionIQ averages the two
caption orders (BASELINES.md §2.6). SEARLE-OTI needs per-image optimisation on each benchmark split and is not
wrapped here; its published numbers stay reported rows.

This module also holds what every released pseudo-token adapter shares (safe loading, dimension checks,
batched prompt encoding); ``pic2word.py`` builds on it.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cirbench.backbones import Backbone, file_sha256
from cirbench.benchmarks.base import Query
from cirbench.lincir.phi import Phi  # SEARLE's textual-inversion network; LinCIR's phi is a copy of it
from cirbench.methods import register_method
from cirbench.methods.base import (
    MethodEntry,
    MethodError,
    MethodInfo,
    modification_variants,
)
from cirbench.methods.preprocessing import PREPROCESS_KINDS, TARGET_RATIO
from cirbench.methods.pseudo_token import PseudoTokenMethod

SEARLE_TEMPLATE = "a photo of $ that {}"
SEARLE_PLACEHOLDER, SEARLE_PLACEHOLDER_ID = "$", 259
SEARLE_FIQ_JOIN = "both-orders"
RELEASE_URL = "https://github.com/miccunifi/SEARLE/releases/download/weights/{}"
# phi input width -> the OpenAI CLIP it was trained on (BASELINES.md §2.1).
SEARLE_BACKBONES = {512: "ViT-B-32:openai", 768: "ViT-L-14:openai"}
SEARLE_VARIANTS = {"ViT-B-32": "SEARLE", "ViT-L-14": "SEARLE-XL"}
SEARLE_TRAINING_DATA = "ImageNet1K test images (unlabelled), phi distilled from OTI tokens + GPT-Neo phrases"


# --- shared by the released-checkpoint adapters -------------------------------------------------------------
def load_checkpoint(path: Path | str, what: str, key: str) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` on CPU with errors a user can act on; never unpickles code."""
    path = Path(path)
    if not path.is_file():
        kind = "is a directory, not a checkpoint file" if path.is_dir() else "does not exist"
        raise MethodError(f"{what} checkpoint {path} {kind}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        detail = str(error.__context__ or error).splitlines()[0]
        if "Unsupported global" not in detail:
            raise MethodError(f"cannot read {what} checkpoint {path}: not a torch checkpoint ({detail})") from error
        resave = (
            f"python -c \"import torch; c = torch.load('{path}', weights_only=False); "
            f"torch.save({{'{key}': c['{key}']}}, 'weights_only.pt')\""
        )
        found = detail.split(" was not")[0]
        raise MethodError(
            f"{what} checkpoint {path} holds pickled objects besides tensors ({found}); "
            "cirbench loads checkpoints with torch.load(weights_only=True) and never unpickles code. If you "
            f"trust the file, keep only the weights and pass the new file: {resave}"
        ) from error
    except Exception as error:  # noqa: BLE001 - corrupt / truncated / not a torch file
        raise MethodError(f"cannot read {what} checkpoint {path}: {error}") from error
    if not isinstance(obj, dict):
        raise MethodError(f"{what} checkpoint {path} is a {type(obj).__name__}, expected a dict of state dicts")
    return obj


def strip_module_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Drop DDP's ``module.`` prefix where present (upstream strips it only when present, so do we)."""
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state_dict.items()}


def released_state_dict(checkpoint: Mapping[str, Any], key: str, path: Path | str, what: str) -> dict[str, Any]:
    """``checkpoint[key]`` with ``module.`` stripped; a clear error when the file is some other checkpoint."""
    if key not in checkpoint or not isinstance(checkpoint[key], Mapping):
        found = ", ".join(sorted(map(str, checkpoint))[:10]) or "none"
        raise MethodError(
            f"{path} is not a released {what} checkpoint: it has no {key!r} state dict (top-level keys: {found})"
        )
    return strip_module_prefix(checkpoint[key])


def require_tensor(state_dict: Mapping[str, Any], key: str, ndim: int, path: Path | str, what: str) -> torch.Tensor:
    value = state_dict.get(key)
    if not isinstance(value, torch.Tensor) or value.ndim != ndim:
        found = ", ".join(sorted(state_dict)[:12])
        raise MethodError(f"{what} weights in {path} lack a {ndim}-d tensor {key!r} (keys: {found})")
    return value


def load_mapper(mapper: nn.Module, state_dict: Mapping[str, Any], path: Path | str, what: str) -> nn.Module:
    """Strict load (no missing or stray keys), fp32, eval mode: dropout off, as in every upstream eval."""
    try:
        mapper.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise MethodError(f"{what} weights in {path} do not fit the released layout: {error}") from error
    return mapper.float().eval().requires_grad_(False)


def check_dims(
    what: str, in_dim: int, out_dim: int, backbone: Backbone, path: Path | str, expected: str | None = None
) -> None:
    """Fail early, naming both sides, when a mapper does not fit the backbone's image and token widths."""
    hint = f"; this checkpoint belongs to {expected} (pass --backbone {expected} or leave it out)" if expected else ""
    model = backbone.id.split(":", 1)[0]
    if in_dim != backbone.image_embed_dim:
        raise MethodError(
            f"{path}: {in_dim}-d {what}, backbone {model} gives {backbone.image_embed_dim}-d image features "
            f"({backbone.id}){hint}"
        )
    if out_dim != backbone.token_dim:
        raise MethodError(
            f"{path}: {what} outputs {out_dim}-d tokens, backbone {model} has {backbone.token_dim}-d token "
            f"embeddings ({backbone.id}){hint}"
        )


def check_options(method: str, options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with the given options; unknown names fail, so a typo cannot pass unnoticed."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise MethodError(f"unknown option(s) {', '.join(unknown)} for {method}; known: {', '.join(defaults)}")
    merged = {**defaults, **options}
    if merged.get("preprocess") not in PREPROCESS_KINDS:
        raise MethodError(f"{method}: preprocess must be one of {PREPROCESS_KINDS}, got {merged.get('preprocess')!r}")
    try:
        merged["batch_size"] = int(merged["batch_size"])
    except (TypeError, ValueError) as error:
        raise MethodError(f"{method}: batch_size must be an integer, got {merged['batch_size']!r}") from error
    return merged


def checkpoint_info(name: str, variant: str, training_data: str, path: Path) -> MethodInfo:
    return MethodInfo(
        name=name,
        variant=variant,
        training_data=training_data,
        zero_shot=True,
        checkpoint=str(path),
        checkpoint_sha256=file_sha256(path),
    )


# --- SEARLE -------------------------------------------------------------------------------------------------
def searle_prompts(query: Query, benchmark: str) -> list[str]:
    """``a photo of $ that {caption}``; FashionIQ: stripped captions in both orders (averaged later)."""
    return [SEARLE_TEMPLATE.format(t) for t in modification_variants(query, benchmark, SEARLE_FIQ_JOIN)]


def read_phi(path: Path | str) -> dict[str, Any]:
    """The ``Phi`` state dict of a released (or trained) SEARLE checkpoint."""
    return released_state_dict(load_checkpoint(path, "SEARLE", "Phi"), "Phi", path, "SEARLE")


def phi_from_state_dict(state_dict: Mapping[str, Any], path: Path | str = "<state dict>") -> Phi:
    """Build phi with the widths the weights carry (in -> 4·in -> 4·in -> token width) and load them."""
    first = require_tensor(state_dict, "layers.0.weight", 2, path, "SEARLE phi")
    last = require_tensor(state_dict, "layers.6.weight", 2, path, "SEARLE phi")
    hidden, in_dim = first.shape
    phi = Phi(int(in_dim), int(hidden), int(last.shape[0]), dropout=0.5)
    return load_mapper(phi, state_dict, path, "SEARLE phi")


def infer_backbone(checkpoint_path: Path | str) -> str:
    """The OpenAI CLIP a SEARLE checkpoint was trained on, from phi's input width (512: B/32, 768: L/14)."""
    in_dim = int(
        require_tensor(read_phi(checkpoint_path), "layers.0.weight", 2, checkpoint_path, "SEARLE phi").shape[1]
    )
    if in_dim not in SEARLE_BACKBONES:
        raise MethodError(
            f"cannot infer the backbone of {checkpoint_path}: its phi takes {in_dim}-d image features "
            f"(released SEARLE checkpoints take {' or '.join(map(str, SEARLE_BACKBONES))}); pass --backbone"
        )
    return SEARLE_BACKBONES[in_dim]


class Searle(PseudoTokenMethod):
    """SEARLE (ViT-B/32) or SEARLE-XL (ViT-L/14) with phi; the variant follows from the backbone."""

    placeholder = SEARLE_PLACEHOLDER
    placeholder_id = SEARLE_PLACEHOLDER_ID

    def prompts(self, query: Query, benchmark: str) -> list[str]:
        return searle_prompts(query, benchmark)

    def eval_config(self) -> dict[str, Any]:
        layers = self.mapper.layers
        widths = [
            layers[0].in_features,
            layers[0].out_features,
            layers[3].out_features,
            layers[6].out_features,
        ]
        config: dict[str, Any] = {
            "variant": self.info.variant,
            "checkpoint_sha256": self.info.checkpoint_sha256,
            "mapper": "phi " + "-".join(map(str, widths)),
            "mapper_input": "unnormalised image embedding",
            "prompt": SEARLE_TEMPLATE.format("{caption}"),
            "placeholder": f"{self.placeholder} ({self.placeholder_id})",
            "fiq_join": SEARLE_FIQ_JOIN,
            "preprocess": self.preprocess,
        }
        if self.preprocess == "targetpad":
            config["target_ratio"] = TARGET_RATIO
        return config


SEARLE_DEFAULTS: dict[str, Any] = {"preprocess": "targetpad", "batch_size": 256}


def build_searle(backbone: Backbone, checkpoint: Path | str | None, options: Mapping[str, Any]) -> Searle:
    """The ``searle`` method: phi from ``checkpoint['Phi']``, checked against ``backbone``."""
    if checkpoint is None:
        raise MethodError("searle needs --checkpoint (SEARLE_ViT-B32.pt or SEARLE_ViT-L14.pt, see methods/)")
    opts = check_options("searle", options, SEARLE_DEFAULTS)
    path = Path(checkpoint)
    phi = phi_from_state_dict(read_phi(path), path)
    in_dim = phi.layers[0].in_features
    check_dims("phi", in_dim, phi.layers[6].out_features, backbone, path, SEARLE_BACKBONES.get(in_dim))
    model = backbone.id.split(":", 1)[0]
    variant = SEARLE_VARIANTS.get(model, f"SEARLE phi on {model}")
    info = checkpoint_info("searle", variant, SEARLE_TRAINING_DATA, path)
    return Searle(backbone, phi, info, opts["preprocess"], opts["batch_size"])


register_method(
    MethodEntry(
        name="searle",
        factory=build_searle,
        description="SEARLE / SEARLE-XL (ICCV 2023): released phi, 'a photo of $ that {caption}', targetpad",
        needs_checkpoint=True,
        options=dict(SEARLE_DEFAULTS),
        infer_backbone=infer_backbone,
    )
)
