"""SEARLE / SEARLE-XL (Baldrati, Agnolucci et al., ICCV 2023) from the released phi checkpoints.

phi maps the *unnormalised* CLIP image embedding of the reference image to one pseudo word token that replaces
``$`` in ``a photo of $ that {caption}``; the text tower's output is the query. FashionIQ averages the two
caption orders (BASELINES.md §2.6). SEARLE-OTI needs per-image optimisation on each benchmark split and is not
wrapped here; its published numbers stay reported rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cirbench.checkpoints import check_dims, load_checkpoint, load_mapper, released_state_dict, require_tensor
from cirbench.errors import MethodError
from cirbench.finite import require_finite_state_dict
from cirbench.methods import METHODS
from cirbench.methods.base import BATCH_SIZE, MethodEntry, preprocess_option, released_checkpoint_info
from cirbench.methods.preprocessing import TARGET_RATIO
from cirbench.methods.pseudo_token import PseudoTokenMethod
from cirbench.phi import Phi
from cirbench.weight_errors import library_errors

TEMPLATE = "a photo of $ that {caption}"
PLACEHOLDER, PLACEHOLDER_ID = "$", 259
CAPTION_JOIN = "both-orders"
RELEASE_URL = "https://github.com/miccunifi/SEARLE/releases/download/weights/{}"
# phi input width -> the OpenAI CLIP it was trained on (BASELINES.md §2.1).
BACKBONES = {512: "ViT-B-32:openai", 768: "ViT-L-14:openai"}
VARIANTS = {"ViT-B-32": "SEARLE", "ViT-L-14": "SEARLE-XL"}
TRAINING_DATA = "ImageNet1K test images (unlabelled), phi distilled from OTI tokens + GPT-Neo phrases"


def read_phi(path: Path | str) -> dict[str, Any]:
    """The ``Phi`` state dict of a released (or trained) SEARLE checkpoint; its weights finite."""
    state = released_state_dict(load_checkpoint(path, "SEARLE", "Phi"), "Phi", path, "SEARLE")
    require_finite_state_dict(state, "SEARLE phi weights", path)
    return state


def phi_from_state_dict(state_dict: Mapping[str, Any], path: Path | str = "<state dict>") -> Phi:
    """Build phi with the widths the weights carry (in -> 4·in -> 4·in -> token width) and load them."""
    first = require_tensor(state_dict, "layers.0.weight", 2, path, "SEARLE phi")
    last = require_tensor(state_dict, "layers.6.weight", 2, path, "SEARLE phi")
    hidden, in_dim = first.shape
    with library_errors(MethodError, "SEARLE phi", path, f"phi {in_dim}-{hidden}-{hidden}-{last.shape[0]}"):
        phi = Phi(int(in_dim), int(hidden), int(last.shape[0]), dropout=0.5)
        return load_mapper(phi, state_dict, path, "SEARLE phi")


def infer_backbone(checkpoint_path: Path | str) -> str:
    """The OpenAI CLIP a SEARLE checkpoint was trained on, from phi's input width (512: B/32, 768: L/14)."""
    in_dim = int(
        require_tensor(read_phi(checkpoint_path), "layers.0.weight", 2, checkpoint_path, "SEARLE phi").shape[1]
    )
    if in_dim not in BACKBONES:
        raise MethodError(
            f"cannot infer the backbone of {checkpoint_path}: its phi takes {in_dim}-d image features "
            f"(released SEARLE checkpoints take {' or '.join(map(str, BACKBONES))}); pass --backbone"
        )
    return BACKBONES[in_dim]


class Searle(PseudoTokenMethod):
    """SEARLE (ViT-B/32) or SEARLE-XL (ViT-L/14) with phi; the variant follows from the backbone."""

    placeholder, placeholder_id = PLACEHOLDER, PLACEHOLDER_ID
    template = TEMPLATE
    caption_join = CAPTION_JOIN
    fill = "first"  # encode_with_pseudo_tokens.py replaces the first $ of each row

    def describe(self) -> dict[str, Any]:
        layers = self.mapper.layers
        widths = [layers[0].in_features, layers[0].out_features, layers[3].out_features, layers[6].out_features]
        config: dict[str, Any] = {
            "variant": self.info.variant,
            "mapper": "phi " + "-".join(map(str, widths)),
            "mapper_input": "unnormalised image embedding",
            "prompt": TEMPLATE,
            "placeholder": f"{self.placeholder} ({self.placeholder_id}), first of each row",
            "fiq_join": CAPTION_JOIN,
            "preprocess": self.preprocess,
        }
        if self.preprocess == "targetpad":
            config["target_ratio"] = TARGET_RATIO
        return config


def build_searle(backbone: Any, checkpoint: Path | None, options: Mapping[str, Any]) -> Searle:
    """The ``searle`` method: phi from ``checkpoint['Phi']``, checked against ``backbone``."""
    path = Path(checkpoint)
    phi = phi_from_state_dict(read_phi(path), path)
    in_dim = phi.layers[0].in_features
    check_dims("phi", in_dim, phi.layers[6].out_features, backbone, path, BACKBONES.get(in_dim))
    model = backbone.id.split(":", 1)[0]
    variant = VARIANTS.get(model, f"SEARLE phi on {model}")
    info = released_checkpoint_info("searle", variant, TRAINING_DATA, path)
    return Searle(backbone, phi, info, options["preprocess"], options["batch_size"])


METHODS.register(
    MethodEntry(
        name="searle",
        factory=build_searle,
        description="SEARLE / SEARLE-XL (ICCV 2023): released phi, 'a photo of $ that {caption}', targetpad",
        options=(preprocess_option("targetpad"), BATCH_SIZE),
        needs_checkpoint=True,
        infer_backbone=infer_backbone,
        checkpoint_hint="SEARLE_ViT-B32.pt or SEARLE_ViT-L14.pt, see methods/",
        version="2",  # 2: literal tokenization and the first placeholder of each row, as upstream
    )
)
