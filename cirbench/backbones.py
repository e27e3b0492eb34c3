"""CLIP backbones through open_clip: ids, weight identities, loading, and the backbone registry.

A backbone id is ``MODEL:TAG`` (``ViT-L-14:openai``), ``MODEL:/path/to/checkpoint`` (a local file), a tiny
random-init config for tests (``cirbench-tiny:random``), or an id served by a registered provider (the shipped
``shapes-clip:v2`` and ``v1``; plugins use the ``cirbench.backbones`` entry-point group).

``backbone_identity`` says which weights an id means without loading them, so a finished result is found and
reused without paying a model load. Nothing is downloaded unless asked (``allow_download``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from cirbench.backbone_hints import available_here, hub_files, unknown_model, unknown_tag
from cirbench.errors import BackboneError, RegistryError
from cirbench.finite import require_finite_module
from cirbench.identity import file_sha256
from cirbench.network import downloads_allowed, hub_access
from cirbench.registry import Registry
from cirbench.text_encoding import encode_tokens, tokenize_with_placeholder
from cirbench.weight_errors import library_errors

CONFIG_DIR = Path(__file__).parent / "model_configs"
RANDOM_TAG = "random"
PRECISIONS = ("fp32", "fp16", "bf16")
PRECISION_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# Paper spellings -> open_clip ids (HARNESS_DESIGN.md §3).
ALIASES = {
    "ViT-B/32": "ViT-B-32:openai",
    "ViT-B/16": "ViT-B-16:openai",
    "ViT-L/14": "ViT-L-14:openai",
    "clip-l": "ViT-L-14:openai",
    "large": "ViT-L-14:openai",
    "huge": "ViT-H-14:laion2b_s32b_b79k",
    "giga": "ViT-bigG-14:laion2b_s39b_b160k",
    "ViT-H/14": "ViT-H-14:laion2b_s32b_b79k",
    "ViT-G/14": "ViT-bigG-14:laion2b_s39b_b160k",
}

# Backbones the paper recipes use, for `cirbench list`.
KNOWN_BACKBONES = (
    "ViT-B-32:openai",
    "ViT-L-14:openai",
    "ViT-H-14:laion2b_s32b_b79k",
    "ViT-bigG-14:laion2b_s39b_b160k",
    "cirbench-tiny:random",
)


@dataclass
class Backbone:
    """A frozen CLIP model with its eval preprocessing and tokenizer, in eval mode."""

    id: str
    model: Any
    preprocess: Callable
    tokenizer: Any
    weights_id: str
    quick_gelu: bool
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    collate: ClassVar[Callable[[Sequence[Any]], Any] | None] = None  # pixel tensors stack (``encoders``)

    @property
    def model_key(self) -> str:
        """Architecture + weights identity, independent of where a checkpoint file lives (for keys)."""
        return f"{self.id.split(':', 1)[0]}|{self.weights_id}"

    @property
    def embed_dim(self) -> int:
        proj = self.model.text_projection
        return int(proj.weight.shape[0] if isinstance(proj, torch.nn.Linear) else proj.shape[1])

    @property
    def token_dim(self) -> int:
        return int(self.model.token_embedding.weight.shape[1])

    @property
    def image_embed_dim(self) -> int:
        return int(getattr(self.model.visual, "output_dim", self.embed_dim))

    @property
    def context_length(self) -> int:
        return int(self.model.context_length)

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.token_embedding.weight.dtype

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unnormalised projected image embeddings (what phi / IM2TEXT consume)."""
        return self.model.encode_image(pixels.to(self.device, self.dtype)).float()

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unnormalised projected text embeddings of plain texts."""
        return encode_tokens(self.model, self.tokenize(texts)).float()

    def tokenize_with_placeholder(
        self, texts: Sequence[str], placeholder: str = "$", placeholder_id: int = 259
    ) -> torch.Tensor:
        """Tokenize texts whose ``placeholder`` marks the pseudo-token slot (see ``text_encoding``)."""
        return tokenize_with_placeholder(texts, self.context_length, placeholder, placeholder_id).to(self.device)


@dataclass(frozen=True)
class BackboneIdentity:
    """Which weights a backbone id means (known without loading them): part of every run key."""

    id: str
    weights_id: str
    quick_gelu: bool

    @property
    def model_key(self) -> str:
        return f"{self.id.split(':', 1)[0]}|{self.weights_id}"


@dataclass(frozen=True)
class BackboneProvider:
    """A registered backbone id served by code: ``load(device, precision)`` and ``identity(precision)``."""

    id: str
    load: Callable[[str | torch.device, str], Backbone]
    identity: Callable[[str], str]
    description: str = ""

    @property
    def factory(self) -> Callable:  # what the registry's clash check compares
        return self.load


def _adapt_provider(obj: Any) -> BackboneProvider:
    if callable(obj) and not isinstance(obj, BackboneProvider):
        obj = obj()
    if not isinstance(obj, BackboneProvider):
        raise RegistryError(f"{obj!r} is not a cirbench.backbones.BackboneProvider")
    return obj


BACKBONES: Registry[BackboneProvider] = Registry(
    "backbone",
    adapt=_adapt_provider,
    name_of=lambda provider: provider.id,
    builtin_modules=("cirbench.shapes.backbone",),
)


@contextlib.contextmanager
def quiet_open_clip() -> Iterator[None]:
    """Hide open_clip's "No pretrained weights loaded" warning: cirbench loads weights itself, on purpose."""

    class _Filter(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "No pretrained weights loaded" not in record.getMessage()

    root = logging.getLogger()
    flt = _Filter()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def register_configs() -> None:
    """Make cirbench's own open_clip model configs (tiny test models, the shapes CLIP) known to open_clip."""
    import open_clip

    if "cirbench-tiny" not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)


@dataclass(frozen=True)
class BackboneSpec:
    """A parsed backbone id: open_clip architecture plus a pretrained tag or a local checkpoint file."""

    model: str
    tag: str | None = None
    checkpoint: Path | None = None
    quick_gelu: bool | None = None

    @property
    def id(self) -> str:
        if self.checkpoint is not None:
            return f"{self.model}:{self.checkpoint}"
        return f"{self.model}:{self.tag}"


def parse_backbone_id(backbone_id: str, quick_gelu: bool | None = None) -> BackboneSpec:
    """Parse ``MODEL:TAG`` / ``MODEL:/path``; aliases such as ``ViT-L/14`` map to their canonical id."""
    backbone_id = ALIASES.get(backbone_id, backbone_id)
    model, sep, rest = backbone_id.partition(":")
    if not sep or not rest:
        raise BackboneError(
            f"backbone id {backbone_id!r} has no tag: write MODEL:TAG (e.g. ViT-L-14:openai), "
            "MODEL:/path/to/checkpoint.pt, or cirbench-tiny:random"
        )
    path = Path(rest).expanduser()
    if "/" in rest or rest.endswith((".pt", ".pth", ".bin", ".safetensors")) or path.is_file():
        return BackboneSpec(model=model, checkpoint=path, quick_gelu=quick_gelu)
    return BackboneSpec(model=model, tag=rest, quick_gelu=quick_gelu)


def _has_openai_tag(model: str) -> bool:
    import open_clip

    return "openai" in open_clip.list_pretrained_tags_by_model(model)


@dataclass(frozen=True)
class _Resolved:
    spec: BackboneSpec
    quick_gelu: bool
    weights_id: str
    pretrained_cfg: dict[str, Any]


def _resolve(backbone_id: str, quick_gelu: bool | None, precision: str) -> _Resolved:
    """Parse an open_clip id, apply the QuickGELU guards and name its weights; nothing is loaded."""
    import open_clip

    if precision not in PRECISIONS:
        raise BackboneError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    register_configs()
    spec = parse_backbone_id(backbone_id, quick_gelu)
    if spec.model not in open_clip.list_models():
        raise BackboneError(unknown_model(spec.model, backbone_id, BACKBONES.names()))
    cfg: dict[str, Any] = {}
    if spec.checkpoint is not None:
        if not spec.checkpoint.is_file():
            raise BackboneError(f"checkpoint file {spec.checkpoint} does not exist (backbone id {backbone_id!r})")
        arch_quick = spec.model.endswith("-quickgelu")
        if spec.quick_gelu is None and not arch_quick and _has_openai_tag(spec.model):
            # open_clip#771: a fine-tuned OpenAI checkpoint reloaded as plain ViT-X silently switches to GELU.
            raise BackboneError(
                f"{spec.model} has OpenAI weights, which use QuickGELU; for the local checkpoint {spec.checkpoint} "
                f"say which activation it was trained with: use {spec.model}-quickgelu:{spec.checkpoint} "
                "(or --quick-gelu) if it derives from OpenAI weights, --no-quick-gelu otherwise"
            )
        use_quick = bool(spec.quick_gelu) or arch_quick
        weights = f"sha256:{file_sha256(spec.checkpoint)}"
    elif spec.tag == RANDOM_TAG:
        use_quick = bool(spec.quick_gelu)
        weights = "random-init:seed0"
    else:
        cfg = open_clip.get_pretrained_cfg(spec.model, spec.tag)
        if not cfg:
            raise BackboneError(unknown_tag(spec.model, spec.tag, BACKBONES.names()))
        tag_quick = bool(cfg.get("quick_gelu", False))
        if spec.quick_gelu is not None and spec.quick_gelu != tag_quick:
            raise BackboneError(
                f"{spec.model}:{spec.tag} was trained with quick_gelu={tag_quick}; "
                f"refusing quick_gelu={spec.quick_gelu}"
            )
        use_quick = tag_quick
        weights = f"open_clip:{spec.model}:{spec.tag}"
    return _Resolved(spec, use_quick, f"{weights}|quick_gelu={use_quick}|{precision}", cfg)


def backbone_identity(backbone_id: str, quick_gelu: bool | None = None, precision: str = "fp32") -> BackboneIdentity:
    """The weights a backbone id means, without loading (a local checkpoint file is hashed, not loaded)."""
    if backbone_id in BACKBONES:
        if quick_gelu:
            raise BackboneError(f"{backbone_id} has a fixed activation; --quick-gelu does not apply")
        return BackboneIdentity(backbone_id, BACKBONES.get(backbone_id).identity(precision), False)
    resolved = _resolve(backbone_id, quick_gelu, precision)
    return BackboneIdentity(resolved.spec.id, resolved.weights_id, resolved.quick_gelu)


# --- loading -----------------------------------------------------------------------------------------------
def expected_widths(model: str) -> str:
    """What a weights file for open_clip ``model`` must hold, for error messages."""
    import open_clip

    cfg = open_clip.get_model_config(model) or {}
    text, image = (cfg.get(key, {}).get("width") for key in ("text_cfg", "vision_cfg"))
    return f"{model} (embed dim {cfg.get('embed_dim')}, text width {text}, image width {image})"


def _hf_hub_download(**kwargs: Any) -> str:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(**kwargs)


def resolve_pretrained_file(model: str, tag: str, allow_download: bool, cache_dir: str | None = None) -> str:
    """Path of the weights for ``model:tag``, from the local cache unless downloads are allowed.

    This is the only place cirbench may touch the network for weights; evaluation never does unless asked.
    """
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        raise BackboneError(unknown_tag(model, tag, BACKBONES.names()))
    if cfg.get("file"):
        return cfg["file"]
    hint = (
        f"weights for {model}:{tag} are not in the local cache; run once with --allow-download (or set "
        f"CIRBENCH_ALLOW_DOWNLOAD=1) on a machine with network, or pass a local checkpoint as MODEL:/path/to/file; "
        f"{available_here(BACKBONES.names())}"
    )
    if cfg.get("hf_hub"):
        repo_id, filenames = hub_files(cfg["hf_hub"])
        last_error: Exception | None = None
        for name in filenames:
            try:
                with hub_access(allow_download):
                    return _hf_hub_download(
                        repo_id=repo_id, filename=name, cache_dir=cache_dir, local_files_only=not allow_download
                    )
            except Exception as error:  # noqa: BLE001 - try the next candidate name
                last_error = error
        raise BackboneError(f"{hint} (hf-hub repo {repo_id}: {last_error})")
    url = cfg.get("url", "")
    target = Path(cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(url)
    if target.is_file():
        return str(target)
    if not allow_download:
        raise BackboneError(f"{hint} (expected {target})")
    from open_clip.pretrained import download_pretrained_from_url

    return download_pretrained_from_url(url, cache_dir=cache_dir)


def load_backbone(
    backbone_id: str,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    allow_download: bool | None = None,
    quick_gelu: bool | None = None,
    cache_dir: str | None = None,
) -> Backbone:
    """Build a frozen backbone from its id (see module docstring); no network unless ``allow_download``."""
    import open_clip

    if backbone_id in BACKBONES:
        if quick_gelu:
            raise BackboneError(f"{backbone_id} has a fixed activation; --quick-gelu does not apply")
        if precision not in PRECISIONS:
            raise BackboneError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        return BACKBONES.get(backbone_id).load(device, precision)
    allow_download = downloads_allowed(allow_download)
    resolved = _resolve(backbone_id, quick_gelu, precision)
    spec, cfg = resolved.spec, resolved.pretrained_cfg
    kwargs: dict[str, Any] = {"precision": precision, "device": device}
    if spec.checkpoint is not None:
        weights_file: str | None = str(spec.checkpoint)
    elif spec.tag == RANDOM_TAG:
        weights_file = None
    else:
        weights_file = resolve_pretrained_file(spec.model, spec.tag, allow_download, cache_dir)
        for key, arg in (("mean", "image_mean"), ("std", "image_std")):
            if cfg.get(key):
                kwargs[arg] = cfg[key]
        for key in ("interpolation", "resize_mode"):
            if cfg.get(key):
                kwargs[f"image_{key}"] = cfg[key]
    errors = library_errors(BackboneError, f"{spec.model} weights", weights_file, expected_widths(spec.model))
    with errors if weights_file else contextlib.nullcontext(), torch.random.fork_rng(devices=[]), quiet_open_clip():
        torch.manual_seed(0)
        model, _, preprocess = open_clip.create_model_and_transforms(
            spec.model, pretrained=weights_file, force_quick_gelu=resolved.quick_gelu, **kwargs
        )
    require_finite_module(model, f"backbone {spec.model} weights", weights_file or "random init")
    model.eval().requires_grad_(False)
    return Backbone(
        id=spec.id,
        model=model,
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer(spec.model),
        weights_id=resolved.weights_id,
        quick_gelu=resolved.quick_gelu,
        device=torch.device(device),
    )
