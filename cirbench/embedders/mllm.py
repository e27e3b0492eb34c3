"""An MLLM embedder (Qwen2-VL family: GME, VLM2Vec-V2): a prompt template around the image and text, last-token
pooling of the final hidden state.

Why the settings are explicit: published embedders on the same backbone differ only in them, and each changes the
numbers. ``MLLMSettings`` holds the query and document templates (``{instruction}`` and ``{text}`` fields, the
image token written out), the instruction of each side, the padding side, the positions (``mrope``: the model's own
3-D rotary positions, as a full forward gives, VLM2Vec; ``sequential``: plain 1-D positions on every axis, as GME's
released code gets by calling the language model on the merged embeddings), the image pixel bounds and GME's
pre-resize to a multiple of 28. Pooling takes each row's last non-pad token (found by the attention mask, so left
and right padding give the same rows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from cirbench.backbones import BackboneIdentity
from cirbench.embedders.hub import ModelSource, from_pretrained, local_folder, torch_dtype, weights_id
from cirbench.errors import BackboneError, OptionError
from cirbench.identity import short_hash

ID_PREFIX = "mllm"
PADDING_SIDES = ("left", "right")
POSITIONS = ("mrope", "sequential")
FACTOR = 28  # Qwen2-VL: 14-px patches merged 2x2


@dataclass(frozen=True)
class MLLMSettings:
    query_template: str
    document_template: str
    instruction: str = ""
    document_instruction: str = ""
    padding_side: str = "left"
    positions: str = "mrope"
    min_pixels: int = 0  # 0: the processor's own
    max_pixels: int = 0
    resize_to_factor: bool = False
    max_length: int = 0  # 0: no truncation
    strip: bool = False  # strip each formatted prompt (VLM2Vec-V2: an empty instruction leaves no trailing space)

    def check(self) -> None:
        for name in ("query_template", "document_template"):
            template = getattr(self, name)
            try:
                template.format(instruction="", text="")
            except (KeyError, IndexError, ValueError) as error:
                raise OptionError(
                    f"option {name}: {template!r} is not a template with only {{instruction}} and {{text}} fields "
                    f"({error}); write literal braces as {{{{ }}}}"
                ) from None

    def gallery_key(self) -> str:
        """What changes a gallery row: the document side's settings (queries are not cached)."""
        keep = (
            "document_template",
            "document_instruction",
            "positions",
            "min_pixels",
            "max_pixels",
            "resize_to_factor",
            "max_length",
            "strip",
        )
        return short_hash({k: v for k, v in asdict(self).items() if k in keep}, 16)


GME_CHAT = (
    "<|im_start|>system\n{{instruction}}<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
    "{text}<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"
)
PRESETS: dict[str, MLLMSettings] = {
    # GME-Qwen2-VL (mteb's wrapper; the released gme_inference.py pads left and asks for >= 256 image tokens)
    "gme": MLLMSettings(
        query_template=GME_CHAT.format(text="{text}"),
        document_template=GME_CHAT.format(text=""),
        instruction="You are a helpful assistant.",
        document_instruction="You are a helpful assistant.",
        padding_side="right",
        positions="sequential",
        min_pixels=4 * FACTOR * FACTOR,
        max_pixels=1280 * FACTOR * FACTOR,
        resize_to_factor=True,
        max_length=1800,
    ),
    # VLM2Vec-V2.0 (mteb's wrapper: no CIRR/FashionIQ instruction, so the empty one; the checkpoint's pixel bounds)
    "vlm2vec-v2": MLLMSettings(
        query_template="<|image_pad|> {instruction} {text}",
        document_template="<|image_pad|> {instruction}",
        padding_side="left",
        strip=True,
        positions="mrope",
    ),
}


def smart_size(height: int, width: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's rule: both sides multiples of 28, the area within the bounds, the aspect ratio kept."""
    h, w = max(FACTOR, round(height / FACTOR) * FACTOR), max(FACTOR, round(width / FACTOR) * FACTOR)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = math.floor(height / beta / FACTOR) * FACTOR, math.floor(width / beta / FACTOR) * FACTOR
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * beta / FACTOR) * FACTOR, math.ceil(width * beta / FACTOR) * FACTOR
    return h, w


def mllm_identity(source: ModelSource, base: ModelSource | None, settings: MLLMSettings, precision: str):
    """``mllm:<model>``; weights = the folder's hash or ``<hub id>@<commit>`` (+ the base of an adapter), the
    precision and the document-side settings, which all change gallery rows."""
    weights = weights_id(source) + (f"+base={weights_id(base)}" if base is not None else "")
    return BackboneIdentity(f"{ID_PREFIX}:{source.name}", f"{weights}|{precision}|doc={settings.gallery_key()}", False)


class MLLMEncoder:
    """A ``GalleryEncoder`` over a Qwen2-VL-style model + processor; ``embed`` encodes queries too."""

    quick_gelu = False

    def __init__(self, model: Any, processor: Any, identity: BackboneIdentity, device: str, settings: MLLMSettings):
        self.model, self.processor, self.settings = model, processor, settings
        self.id, self.weights_id = identity.id, identity.weights_id
        self.device = torch.device(device)

    @property
    def model_key(self) -> str:
        return f"{self.id}|{self.weights_id}"

    @property
    def image_embed_dim(self) -> int:
        config = self.model.config
        return int(getattr(config, "text_config", config).hidden_size)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def preprocess(self, image: Any) -> Any:
        """RGB PIL in, PIL out (GME resizes to a multiple of 28 first; the processor does the rest per batch)."""
        image = image.convert("RGB")
        if self.settings.resize_to_factor:
            h, w = smart_size(image.height, image.width, 4 * FACTOR * FACTOR, 16384 * FACTOR * FACTOR)
            image = image.resize((w, h))
        return image

    @staticmethod
    def collate(items: Sequence[Any]) -> list[Any]:
        return list(items)

    def encode_image(self, images: Sequence[Any]) -> torch.Tensor:
        """Document rows (unnormalised pooled states) for a list of preprocessed images."""
        s = self.settings
        prompt = self._prompt(s.document_template, s.document_instruction, "")
        return self.embed([prompt] * len(images), list(images))

    def query_prompts(self, texts: Sequence[str]) -> list[str]:
        s = self.settings
        return [self._prompt(s.query_template, s.instruction, t) for t in texts]

    def _prompt(self, template: str, instruction: str, text: str) -> str:
        prompt = template.format(instruction=instruction, text=text)
        return prompt.strip() if self.settings.strip else prompt

    def inputs(self, prompts: Sequence[str], images: Sequence[Any]) -> dict[str, torch.Tensor]:
        """The processor's batch (image tokens expanded, padded on ``padding_side``)."""
        s = self.settings
        self.processor.tokenizer.padding_side = s.padding_side
        extra: dict[str, Any] = {"truncation": True, "max_length": s.max_length} if s.max_length else {}
        batch = self.processor(
            text=list(prompts), images=list(images) or None, padding=True, return_tensors="pt", **extra
        )
        return {k: v.to(self.device) for k, v in batch.items()}

    @torch.no_grad()
    def hidden(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The final hidden states (after the last norm) of the multimodal model, without the LM head."""
        kwargs = dict(batch)
        if self.settings.positions == "sequential":
            mask = batch["attention_mask"]
            kwargs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        kwargs.pop("token_type_ids", None)
        if "pixel_values" in kwargs:
            kwargs["pixel_values"] = kwargs["pixel_values"].to(self.dtype)
        return self.model.model(**kwargs, use_cache=False).last_hidden_state

    def embed(self, prompts: Sequence[str], images: Sequence[Any]) -> torch.Tensor:
        batch = self.inputs(prompts, images)
        return last_token(self.hidden(batch), batch["attention_mask"]).float()


def last_token(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each row's state at its last attended position (the last column under left padding)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), positions, -1).max(dim=1).values
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def _load_model(folder: Path, base: ModelSource | None, precision: str, allow_download: bool) -> Any:
    from transformers import AutoModelForImageTextToText

    dtype = torch_dtype(precision)
    if not (folder / "adapter_config.json").is_file():
        return from_pretrained(AutoModelForImageTextToText, folder, "an image-text-to-text model", dtype=dtype)
    try:
        from peft import PeftModel
    except ImportError:
        raise BackboneError(f"{folder} is a LoRA adapter; loading it needs peft: pip install peft") from None
    if base is None:
        raise OptionError(f"{folder} is a LoRA adapter: name its base model with -o base_model=<folder or hub id>")
    base_folder = local_folder(base, allow_download)
    model = from_pretrained(AutoModelForImageTextToText, base_folder, "the adapter's base model", dtype=dtype)
    return PeftModel.from_pretrained(model, str(folder)).merge_and_unload()


def load_mllm(
    source: ModelSource,
    base: ModelSource | None,
    settings: MLLMSettings,
    precision: str,
    device: str,
    allow_download: bool,
) -> MLLMEncoder:
    """Load the model (merging a LoRA adapter onto its base) and its processor, frozen, in ``precision``."""
    from transformers import AutoProcessor

    settings.check()
    identity = mllm_identity(source, base, settings, precision)
    folder = local_folder(source, allow_download)
    pixels = {k: v for k, v in (("min_pixels", settings.min_pixels), ("max_pixels", settings.max_pixels)) if v}
    processor = from_pretrained(AutoProcessor, folder, "a processor", **pixels)
    model = _load_model(folder, base, precision, allow_download).to(device).eval().requires_grad_(False)
    return MLLMEncoder(model, processor, identity, device, settings)
