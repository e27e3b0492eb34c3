"""A Hugging Face CLIP-layout dual encoder (``transformers.CLIPModel``): BGE-VL (MMRet-CLIP), UniIR CLIP_SF, CLIP.

Why its own encoder: these checkpoints are HF folders, not open_clip weights, and their composed query is a
*fusion* of the text and reference-image features whose order matters (``FUSIONS``): BGE-VL, CLIP_SF and mteb's
CLIP wrapper sum the raw projected features, then normalise; mteb's BLIP wrapper and the classic image+text
baseline normalise each part first. The two rank differently. Candidates are the image features (the engine
normalises them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cirbench.backbones import BackboneIdentity
from cirbench.embedders.hub import ModelSource, from_pretrained, local_folder, torch_dtype, weights_id

FUSIONS = ("sum-raw", "sum-normalised")
ID_PREFIX = "hf-clip"


def clip_identity(source: ModelSource, precision: str) -> BackboneIdentity:
    """``hf-clip:<model>`` and its weights (hashed folder or ``<hub id>@<commit>``), without loading."""
    return BackboneIdentity(f"{ID_PREFIX}:{source.name}", f"{weights_id(source)}|{precision}", False)


def _features(output: Any) -> torch.Tensor:
    """transformers 5 returns an output whose ``pooler_output`` is the projected feature; 4.x the tensor itself."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class HFClipEncoder:
    """A ``GalleryEncoder`` over an HF ``CLIPModel`` + ``CLIPProcessor``, plus the text side the method uses."""

    quick_gelu = False
    collate = None  # pixel tensors of one size: torch's default stacking

    def __init__(self, model: Any, processor: Any, identity: BackboneIdentity, device: str, max_text_tokens: int):
        self.model = model
        self.processor = processor
        self.id = identity.id
        self.weights_id = identity.weights_id
        self.device = torch.device(device)
        self.max_text_tokens = max_text_tokens

    @property
    def model_key(self) -> str:
        return f"{self.id}|{self.weights_id}"

    @property
    def image_embed_dim(self) -> int:
        return int(self.model.config.projection_dim)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def preprocess(self, image: Any) -> torch.Tensor:
        """One RGB PIL image to the processor's pixel tensor (resize, centre crop, CLIP's mean/std)."""
        return self.processor.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Projected image features, unnormalised, in float32."""
        pixels = pixels.to(self.device, self.dtype)
        return _features(self.model.get_image_features(pixel_values=pixels)).float()

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Padded to the longest text, truncated to ``max_text_tokens`` (start and end tokens included)."""
        batch = self.processor.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_text_tokens, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in batch.items()}

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Projected text features, unnormalised, in float32."""
        return _features(self.model.get_text_features(**self.tokenize(texts))).float()


def fuse(text: torch.Tensor, image: torch.Tensor, fusion: str) -> torch.Tensor:
    """The composed query before its final normalisation (see module docstring)."""
    if fusion == "sum-raw":
        return text + image
    return F.normalize(text, dim=-1) + F.normalize(image, dim=-1)


def load_clip(
    source: ModelSource, precision: str, device: str, allow_download: bool, max_text_tokens: int
) -> HFClipEncoder:
    """Load the folder (or the hub id's cached snapshot) as a frozen ``CLIPModel`` in ``precision``."""
    from transformers import CLIPModel, CLIPProcessor

    identity = clip_identity(source, precision)
    folder: Path = local_folder(source, allow_download)
    model = from_pretrained(CLIPModel, folder, "a CLIPModel", dtype=torch_dtype(precision))
    processor = from_pretrained(CLIPProcessor, folder, "a CLIPProcessor")
    model = model.to(device).eval().requires_grad_(False)
    return HFClipEncoder(model, processor, identity, device, max_text_tokens)
