"""Pic2Word (Saito et al., CVPR 2023) from its released checkpoint.

IM2TEXT maps the *unnormalised* CLIP image embedding of the reference image to one word token, which replaces
``*`` (id 265) in the prompt; the text tower's output is the query (BASELINES.md §1). Two prompt protocols:

- ``paper`` (default): upstream's prompts, ``a photo of * , {caption}``; FashionIQ ``a photo of * , {cap2} and
  {cap1}`` with the captions unstripped, one prompt.
- ``lincir``: the protocol the LinCIR paper re-scored Pic2Word with, SEARLE's ``a photo of $ that {caption}``
  (``$``/259) and FashionIQ's stripped two-order average. Numbers differ; results record which one ran.

Unlike upstream, the ``*`` is located per sample. CLIP comes from the backbone: the checkpoint's frozen copy
of CLIP is ignored (it equals OpenAI's weights).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cirbench.checkpoints import check_dims, load_checkpoint, load_mapper, released_state_dict, require_tensor
from cirbench.errors import MethodError
from cirbench.finite import require_finite_state_dict
from cirbench.methods import METHODS
from cirbench.methods.base import BATCH_SIZE, MethodEntry, preprocess_option, released_checkpoint_info
from cirbench.methods.preprocessing import TARGET_RATIO
from cirbench.methods.pseudo_token import PseudoTokenMethod
from cirbench.methods.searle import CAPTION_JOIN as SEARLE_CAPTION_JOIN
from cirbench.methods.searle import PLACEHOLDER as SEARLE_PLACEHOLDER
from cirbench.methods.searle import PLACEHOLDER_ID as SEARLE_PLACEHOLDER_ID
from cirbench.methods.searle import TEMPLATE as SEARLE_TEMPLATE
from cirbench.options import Option
from cirbench.weight_errors import library_errors

PIC2WORD_TEMPLATE = "a photo of * , {caption}"
PIC2WORD_PLACEHOLDER, PIC2WORD_PLACEHOLDER_ID = "*", 265
PIC2WORD_CAPTION_JOIN = "c2-and-c1-raw"
PROMPT_PROTOCOLS = ("paper", "lincir")
# IM2TEXT input width -> backbone; only the ViT-L/14 model was released.
PIC2WORD_BACKBONES = {768: "ViT-L-14:openai"}
PIC2WORD_TRAINING_DATA = "CC3M images (captions unused)"
CHECKPOINT_KEY = "state_dict_img2text"


class IM2TEXT(nn.Module):
    """Pic2Word's mapping network (``model/model.py``): ``n_layer`` × (Linear, Dropout(0.1), ReLU), fc_out."""

    def __init__(
        self,
        embed_dim: int = 512,
        middle_dim: int = 512,
        output_dim: int = 512,
        n_layer: int = 2,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.fc_out = nn.Linear(middle_dim, output_dim)
        blocks = []
        dim = embed_dim
        for _ in range(n_layer):
            blocks.append(nn.Sequential(nn.Linear(dim, middle_dim), nn.Dropout(dropout), nn.ReLU()))
            dim = middle_dim
        self.layers = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.fc_out(x)


def read_img2text(path: Path | str) -> dict[str, Any]:
    """``state_dict_img2text`` of a Pic2Word checkpoint, ``module.`` stripped when present; its weights finite."""
    state = released_state_dict(load_checkpoint(path, "Pic2Word", CHECKPOINT_KEY), CHECKPOINT_KEY, path, "Pic2Word")
    require_finite_state_dict(state, "Pic2Word IM2TEXT weights", path)
    return state


def im2text_from_state_dict(state_dict: Mapping[str, Any], path: Path | str = "<state dict>") -> IM2TEXT:
    """Build IM2TEXT with the widths and depth the weights carry (768→512→512→768 for the release)."""
    n_layer = 0
    while f"layers.{n_layer}.0.weight" in state_dict:
        n_layer += 1
    first = require_tensor(state_dict, "layers.0.0.weight", 2, path, "Pic2Word IM2TEXT")
    out = require_tensor(state_dict, "fc_out.weight", 2, path, "Pic2Word IM2TEXT")
    middle, embed = first.shape
    with library_errors(MethodError, "Pic2Word IM2TEXT", path, f"IM2TEXT {embed}-{middle}-{out.shape[0]}"):
        mapper = IM2TEXT(int(embed), int(middle), int(out.shape[0]), n_layer=n_layer, dropout=0.1)
        return load_mapper(mapper, state_dict, path, "Pic2Word IM2TEXT")


def infer_backbone(checkpoint_path: Path | str) -> str:
    """The backbone of a Pic2Word checkpoint from IM2TEXT's input width (768: OpenAI ViT-L/14)."""
    weights = read_img2text(checkpoint_path)
    in_dim = int(require_tensor(weights, "layers.0.0.weight", 2, checkpoint_path, "Pic2Word IM2TEXT").shape[1])
    if in_dim not in PIC2WORD_BACKBONES:
        raise MethodError(
            f"cannot infer the backbone of {checkpoint_path}: its IM2TEXT takes {in_dim}-d image features "
            "(the released Pic2Word takes 768, OpenAI ViT-L/14); pass --backbone"
        )
    return PIC2WORD_BACKBONES[in_dim]


class Pic2Word(PseudoTokenMethod):
    """Pic2Word's IM2TEXT with the ``paper`` or ``lincir`` prompt protocol; the first placeholder of each row."""

    fill = "first"

    def __init__(self, *args: Any, prompt_protocol: str = "paper", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prompt_protocol = prompt_protocol
        if prompt_protocol == "paper":
            self.placeholder, self.placeholder_id = PIC2WORD_PLACEHOLDER, PIC2WORD_PLACEHOLDER_ID
            self.template, self.caption_join = PIC2WORD_TEMPLATE, PIC2WORD_CAPTION_JOIN
        else:
            self.placeholder, self.placeholder_id = SEARLE_PLACEHOLDER, SEARLE_PLACEHOLDER_ID
            self.template, self.caption_join = SEARLE_TEMPLATE, SEARLE_CAPTION_JOIN

    def describe(self) -> dict[str, Any]:
        blocks, fc_out = self.mapper.layers, self.mapper.fc_out
        widths = [blocks[0][0].in_features] + [b[0].out_features for b in blocks] + [fc_out.out_features]
        if self.prompt_protocol == "paper":
            fiq = PIC2WORD_TEMPLATE.format(caption="{cap2} and {cap1}")
        else:
            orders = ("{cap1} and {cap2}", "{cap2} and {cap1}")
            fiq = " + ".join(SEARLE_TEMPLATE.format(caption=o) for o in orders)
        config: dict[str, Any] = {
            "variant": self.info.variant,
            "mapper": "im2text " + "-".join(map(str, widths)),
            "mapper_input": "unnormalised image embedding",
            "prompt_protocol": self.prompt_protocol,
            "prompt": self.template,
            "fiq_prompt": fiq,
            "placeholder": f"{self.placeholder} ({self.placeholder_id}), first of each row",
            "fiq_join": self.caption_join,
            "preprocess": self.preprocess,
        }
        if self.preprocess == "targetpad":
            config["target_ratio"] = TARGET_RATIO
        return config


def build_pic2word(backbone: Any, checkpoint: Path | None, options: Mapping[str, Any]) -> Pic2Word:
    """The ``pic2word`` method: IM2TEXT from ``state_dict_img2text``, checked against ``backbone``."""
    protocol = options["prompt_protocol"]
    path = Path(checkpoint)
    mapper = im2text_from_state_dict(read_img2text(path), path)
    in_dim = mapper.layers[0][0].in_features
    check_dims("IM2TEXT", in_dim, mapper.fc_out.out_features, backbone, path, PIC2WORD_BACKBONES.get(in_dim))
    variant = "Pic2Word" if protocol == "paper" else "Pic2Word (LinCIR prompt protocol)"
    model = backbone.id.split(":", 1)[0]
    if model != "ViT-L-14":
        variant += f" on {model}"
    info = released_checkpoint_info("pic2word", variant, PIC2WORD_TRAINING_DATA, path)
    return Pic2Word(backbone, mapper, info, options["preprocess"], options["batch_size"], prompt_protocol=protocol)


METHODS.register(
    MethodEntry(
        name="pic2word",
        factory=build_pic2word,
        description="Pic2Word (CVPR 2023): released IM2TEXT, 'a photo of * , {caption}' or LinCIR's prompts",
        options=(
            Option(
                "prompt_protocol",
                "choice",
                "paper",
                "paper: upstream prompts; lincir: SEARLE's, as LinCIR re-scored",
                PROMPT_PROTOCOLS,
                varies=True,
            ),
            preprocess_option("clip"),
            BATCH_SIZE,
        ),
        needs_checkpoint=True,
        infer_backbone=infer_backbone,
        checkpoint_hint="pic2word_model.pt, see methods/pic2word-vit-l-14.yaml",
        version="2",  # 2: literal tokenization and the first placeholder of each row, as upstream
    )
)
