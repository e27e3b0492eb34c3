"""The shipped shapes CLIPs as registered backbone providers and their compact weight format.

- ``shapes-clip:v2`` (the default, ``assets/shapes_clip_v2``): pretrained with CLIP's own objective, symmetric
  InfoNCE with one caption per image (``cirbench shapes pretrain``), as every real CLIP is.
- ``shapes-clip:v1`` (``assets/shapes_clip``): pretrained with every matching caption in the batch as a positive
  (``--multi-positive``). Kept for the comparison in docs/SHAPES.md: that objective makes the embedding close to
  additive over attributes, which favours the image+text sum.

Why a custom format: the weights ship inside the package (≤ 10 MB), so they are stored in fp16 and only
the token-embedding rows the shapes grammar can produce are kept; pretraining keeps every other row at zero
from the start, so restoring them as zeros reproduces the trained model exactly (up to fp16 rounding).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cirbench.backbones import (
    BACKBONES,
    PRECISION_DTYPES,
    Backbone,
    BackboneProvider,
    expected_widths,
    quiet_open_clip,
    register_configs,
)
from cirbench.errors import BackboneError
from cirbench.finite import require_finite_module
from cirbench.identity import file_sha256
from cirbench.io import atomic_write, atomic_write_text
from cirbench.weight_errors import library_errors

MODEL_NAME = "shapes-clip"
CONFIG_MODEL_FILE = Path(__file__).resolve().parents[1] / "model_configs" / f"{MODEL_NAME}.json"
ASSETS = Path(__file__).resolve().parents[1] / "assets"
VERSIONS = {"shapes-clip:v1": ASSETS / "shapes_clip", "shapes-clip:v2": ASSETS / "shapes_clip_v2"}
BACKBONE_ID = "shapes-clip:v2"  # the default shapes backbone (demo, cards)
ASSET_DIR = VERSIONS[BACKBONE_ID]
WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"
EMBED_KEY = "token_embedding.weight"
# OpenAI CLIP statistics; recorded in meta.json and used by both pretraining and evaluation.
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def image_transform(size: int = 48, mean: tuple = MEAN, std: tuple = STD) -> Callable:
    """Eval preprocessing: the world's images are already ``size`` px, so resize/crop are no-ops for them."""
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(size),
            T.Lambda(lambda image: image.convert("RGB")),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def create_model(seed: int = 0) -> Any:
    """A freshly initialised ``shapes-clip`` open_clip model (deterministic from ``seed``)."""
    import open_clip

    register_configs()
    with torch.random.fork_rng(devices=[]), quiet_open_clip():
        torch.manual_seed(seed)
        return open_clip.create_model(MODEL_NAME, pretrained=None)


def save_weights(model: Any, out_dir: Path, kept_ids: list[int], meta: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` (fp16, kept embedding rows only) and ``meta.json`` into ``out_dir``."""
    from safetensors.torch import save

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = torch.tensor(sorted(kept_ids), dtype=torch.long)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items() if k != EMBED_KEY}
    embedding = model.state_dict()[EMBED_KEY]
    dropped = embedding.clone()
    dropped[ids] = 0
    if dropped.abs().max() > 0:
        raise ValueError("token-embedding rows outside kept_ids are non-zero; they would be lost on save")
    state["token_embedding.rows"] = embedding[ids].to(torch.float16).contiguous()
    state["token_embedding.ids"] = ids
    blob = save(state, metadata={"format": "cirbench-shapes-clip-v1", "model": MODEL_NAME})
    atomic_write(out_dir / WEIGHTS_FILE, blob)
    meta = {**meta, "weights_sha256": file_sha256(out_dir / WEIGHTS_FILE), "kept_token_ids": ids.tolist()}
    atomic_write_text(out_dir / META_FILE, json.dumps(meta, indent=2) + "\n")
    return out_dir / WEIGHTS_FILE


def load_model(weights_dir: Path = ASSET_DIR) -> tuple[Any, dict[str, Any]]:
    """The fp32 model from a weights folder, in eval mode and frozen, plus its metadata."""
    from safetensors.torch import load_file

    weights_dir = Path(weights_dir)
    path = weights_dir / WEIGHTS_FILE
    if not path.is_file():
        raise BackboneError(
            f"shapes CLIP weights not found at {path}; regenerate with "
            f"`cirbench shapes pretrain --out {weights_dir}` (add --multi-positive for shapes-clip:v1)"
        )
    fix = f"regenerate it with `cirbench shapes pretrain --out {weights_dir}` (add --multi-positive for v1)"
    try:
        meta = json.loads((weights_dir / META_FILE).read_text())
    except (OSError, ValueError) as error:  # a missing or damaged meta.json
        raise BackboneError(
            f"cannot read the shapes CLIP weights in {weights_dir} ({error}); it needs {WEIGHTS_FILE} and "
            f"{META_FILE} as `cirbench shapes pretrain --out {weights_dir}` writes them"
        ) from error
    with library_errors(BackboneError, f"{MODEL_NAME} weights", path, expected_widths(MODEL_NAME), fix):
        state = load_file(str(path))
        ids = state.pop("token_embedding.ids")
        rows = state.pop("token_embedding.rows")
        model = create_model(seed=0)
        embedding = torch.zeros_like(model.token_embedding.weight)
        embedding[ids] = rows.float()
        state = {k: v.float() for k, v in state.items()}
        state[EMBED_KEY] = embedding
        missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k != "attn_mask"]:
        raise BackboneError(f"{path} does not match {MODEL_NAME}: missing {missing}, unexpected {unexpected}; {fix}")
    require_finite_module(model, f"backbone {MODEL_NAME} weights", path, fix)
    model.eval().requires_grad_(False)
    return model, meta


def weights_identity(precision: str = "fp32", weights_dir: Path = ASSET_DIR) -> str:
    """The shipped weights' hash (plus the precision when it is not fp32): known without loading the model."""
    digest = f"sha256:{file_sha256(Path(weights_dir) / WEIGHTS_FILE)}"
    return digest if precision == "fp32" else f"{digest}|{precision}"


def load_shapes_backbone(
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    weights_dir: Path = ASSET_DIR,
    backbone_id: str = BACKBONE_ID,
) -> Backbone:
    """A CLIP pretrained on the shapes world that ships with cirbench (``backbone_id`` names the version)."""
    import open_clip

    model, meta = load_model(weights_dir)
    model.to(device=device, dtype=PRECISION_DTYPES[precision])
    size = int(meta.get("image_size", 48))
    return Backbone(
        id=backbone_id,
        model=model,
        preprocess=image_transform(size, tuple(meta.get("mean", MEAN)), tuple(meta.get("std", STD))),
        tokenizer=open_clip.get_tokenizer(MODEL_NAME),
        weights_id=weights_identity(precision, weights_dir),
        quick_gelu=False,
        device=torch.device(device),
    )


@dataclass(frozen=True)
class ShapesVersion:
    """One shipped version: its id and weights folder (bound methods keep the registry's definitions stable)."""

    backbone_id: str
    weights_dir: Path

    def load(self, device: str | torch.device = "cpu", precision: str = "fp32") -> Backbone:
        return load_shapes_backbone(device, precision, self.weights_dir, self.backbone_id)

    def identity(self, precision: str = "fp32") -> str:
        return weights_identity(precision, self.weights_dir)


DESCRIPTIONS = {
    "shapes-clip:v2": "tiny CLIP pretrained on the synthetic shapes world with CLIP's objective (default)",
    "shapes-clip:v1": "tiny CLIP pretrained on the shapes world with every matching caption a positive (comparison)",
}
for _id, _folder in VERSIONS.items():
    _version = ShapesVersion(_id, _folder)
    BACKBONES.register(BackboneProvider(_id, _version.load, _version.identity, DESCRIPTIONS[_id]))
