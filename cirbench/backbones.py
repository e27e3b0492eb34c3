"""CLIP backbones through open_clip: ids, loading, and every encoder the methods need.

A backbone id is ``MODEL:TAG`` (``ViT-L-14:openai``), ``MODEL:/path/to/checkpoint`` (a local file), or a tiny
random-init config for tests (``cirbench-tiny:random``). Backbones registered by cirbench itself (for example the
shipped shapes CLIP) resolve through ``BACKBONE_LOADERS``.

Why this module owns text encoding with pseudo tokens: LinCIR, SEARLE and Pic2Word all replace the embedding at a
placeholder position and must otherwise run the text tower exactly like ``CLIP.encode_text``; one implementation
keeps them identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

CONFIG_DIR = Path(__file__).parent / "model_configs"
RANDOM_TAG = "random"

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

# Extra backbone ids served by cirbench code (e.g. the shipped shapes CLIP); name -> loader(device) -> Backbone.
BACKBONE_LOADERS: dict[str, Callable[..., Backbone]] = {}


class BackboneError(RuntimeError):
    """A backbone id that cannot be resolved, weights that are not available offline, or a guard that fired."""


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


def register_builtin_backbones() -> None:
    """Import the modules that serve extra backbone ids (the shipped shapes CLIP), if present."""
    import importlib

    try:
        importlib.import_module("cirbench.shapes.backbone")
    except ModuleNotFoundError as error:
        if error.name != "cirbench.shapes.backbone":
            raise


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

    # --- encoders -------------------------------------------------------------------------------------------
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
        """Tokenize texts whose ``placeholder`` marks the pseudo-token slot, see ``tokenize_with_placeholder``."""
        return tokenize_with_placeholder(texts, self.context_length, placeholder, placeholder_id).to(self.device)

    def encode_with_pseudo_tokens(
        self, tokens: torch.Tensor, pseudo_tokens: torch.Tensor, placeholder_id: int = 259
    ) -> torch.Tensor:
        """Unnormalised text embeddings with ``pseudo_tokens[b]`` at every ``placeholder_id`` of row b."""
        return encode_tokens(self.model, tokens, pseudo_tokens, placeholder_id)


def eot_positions(tokens: torch.Tensor) -> torch.Tensor:
    """Index of the pooled token of each row: the first end-of-text, i.e. ``argmax`` of the ids (pad id is 0)."""
    return tokens.argmax(dim=-1)


def pools_at_argmax(model: Any) -> bool:
    """True when the tower pools at ``argmax`` of the ids (CLIP's EOT), which ``eot_positions`` assumes.

    open_clip's ``eos`` pooling (first ``eos_id``) is the same when the EOS id is the vocabulary's largest id.
    """
    pool = getattr(model, "text_pool_type", "argmax")
    if pool == "argmax":
        return True
    vocab = getattr(getattr(model, "token_embedding", None), "num_embeddings", None)
    return pool == "eos" and vocab is not None and getattr(model, "text_eos_id", None) == vocab - 1


def encode_tokens(
    model: Any,
    tokens: torch.Tensor,
    pseudo_tokens: torch.Tensor | None = None,
    placeholder_id: int = 259,
    truncate: bool = False,
) -> torch.Tensor:
    """Run open_clip's text tower exactly like ``CLIP.encode_text``, optionally with pseudo tokens.

    Every position whose id is ``placeholder_id`` gets that row's pseudo token (several placeholders share one
    vector, as in LinCIR/SEARLE). ``truncate`` cuts the batch to its longest sequence up to EOT: the tower is
    causal and pools at EOT, so later positions cannot influence the result (an exact speedup).
    Returns unnormalised projected features in the tower's dtype (gradients flow into ``pseudo_tokens``).
    """
    if not pools_at_argmax(model):
        raise BackboneError(
            f"this text tower pools with {getattr(model, 'text_pool_type', None)!r} (EOS id "
            f"{getattr(model, 'text_eos_id', None)}); cirbench's text encoding pools at the EOT token "
            "(the largest id), as CLIP does, so this backbone is not supported"
        )
    cast_dtype = model.transformer.get_cast_dtype()
    if truncate and model.attn_mask is not None:  # exact only for a causal tower
        length = int(eot_positions(tokens).max().item()) + 1
        tokens = tokens[:, :length]
    length = tokens.shape[1]
    x = model.token_embedding(tokens).to(cast_dtype)
    if pseudo_tokens is not None:
        slots = (tokens == placeholder_id).unsqueeze(-1)
        x = torch.where(slots, pseudo_tokens.to(cast_dtype).unsqueeze(1), x)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    attn_mask = model.attn_mask
    if attn_mask is not None:
        attn_mask = attn_mask[:length, :length]
    x = model.transformer(x, attn_mask=attn_mask)
    x = model.ln_final(x)
    return project_text(model, x[torch.arange(x.shape[0], device=x.device), eot_positions(tokens)])


def project_text(model: Any, pooled: torch.Tensor) -> torch.Tensor:
    """The text tower's final projection of pooled (EOT) features: a matrix, a Linear, or none."""
    projection = model.text_projection
    if projection is None:
        return pooled
    if isinstance(projection, torch.nn.Linear):
        return projection(pooled)
    return pooled @ projection


def tokenize_with_placeholder(
    texts: Sequence[str], context_length: int = 77, placeholder: str = "$", placeholder_id: int = 259
) -> torch.Tensor:
    """Tokenize with every ``placeholder`` as its own token ``placeholder_id``.

    Substituting ``$`` into a string is not enough: BPE merges it with neighbours (``"$."`` -> 34682). Like the
    HF special-token path upstream, the text is split at the placeholder, the pieces are tokenized separately
    and the id is inserted between them. Lower-cased and cleaned like open_clip's tokenizer; truncated to the
    context with EOT kept last, as ``open_clip.tokenize`` does.
    """
    from open_clip.tokenizer import _tokenizer

    sot, eot = _tokenizer.encoder["<start_of_text>"], _tokenizer.encoder["<end_of_text>"]
    out = torch.zeros(len(texts), context_length, dtype=torch.long)
    for row, text in enumerate(texts):
        ids: list[int] = []
        for i, piece in enumerate(text.split(placeholder)):
            if i > 0:
                ids.append(placeholder_id)
            ids.extend(_tokenizer.encode(piece))
        ids = [sot, *ids][: context_length - 1] + [eot]
        out[row, : len(ids)] = torch.tensor(ids)
    return out


# --- loading -----------------------------------------------------------------------------------------------
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
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise BackboneError(f"unknown pretrained tag {tag!r} for {model}; open_clip knows: {', '.join(tags) or 'none'}")
    if cfg.get("file"):
        return cfg["file"]
    hint = (
        f"weights for {model}:{tag} are not in the local cache; run once with --allow-download (or set "
        "CIRBENCH_ALLOW_DOWNLOAD=1) on a machine with network, or pass a local checkpoint as MODEL:/path/to/file"
    )
    if cfg.get("hf_hub"):
        repo_id, filename = os.path.split(cfg["hf_hub"])
        filenames = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith((".bin", ".pth")):
            filenames.insert(0, filename.rsplit(".", 1)[0] + ".safetensors")
        last_error: Exception | None = None
        for name in filenames:
            try:
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


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tensors_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """Hash of a state dict's names, dtypes, shapes and values: identifies weights whatever file holds them."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _has_openai_tag(model: str) -> bool:
    import open_clip

    return "openai" in open_clip.list_pretrained_tags_by_model(model)


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

    register_configs()
    register_builtin_backbones()
    if backbone_id in BACKBONE_LOADERS:
        return BACKBONE_LOADERS[backbone_id](device=device)
    if allow_download is None:
        allow_download = os.environ.get("CIRBENCH_ALLOW_DOWNLOAD", "") not in ("", "0")
    spec = parse_backbone_id(backbone_id, quick_gelu)
    if spec.model not in open_clip.list_models():
        raise BackboneError(f"unknown open_clip architecture {spec.model!r} in backbone id {backbone_id!r}")
    kwargs: dict[str, Any] = {"precision": precision, "device": device}
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
        weights_file = str(spec.checkpoint)
        weights_id = f"sha256:{file_sha256(spec.checkpoint)}"
    elif spec.tag == RANDOM_TAG:
        use_quick = bool(spec.quick_gelu)
        weights_file = None
        weights_id = "random-init:seed0"
    else:
        cfg = open_clip.get_pretrained_cfg(spec.model, spec.tag)
        tag_quick = bool(cfg.get("quick_gelu", False)) if cfg else False
        if spec.quick_gelu is not None and spec.quick_gelu != tag_quick:
            raise BackboneError(
                f"{spec.model}:{spec.tag} was trained with quick_gelu={tag_quick}; "
                f"refusing quick_gelu={spec.quick_gelu}"
            )
        use_quick = tag_quick
        weights_file = resolve_pretrained_file(spec.model, spec.tag, allow_download, cache_dir)
        weights_id = f"open_clip:{spec.model}:{spec.tag}"
        for key, arg in (("mean", "image_mean"), ("std", "image_std")):
            if cfg.get(key):
                kwargs[arg] = cfg[key]
        for key in ("interpolation", "resize_mode"):
            if cfg.get(key):
                kwargs[f"image_{key}"] = cfg[key]
    with torch.random.fork_rng(devices=[]), quiet_open_clip():
        torch.manual_seed(0)
        model, _, preprocess = open_clip.create_model_and_transforms(
            spec.model, pretrained=weights_file, force_quick_gelu=use_quick, **kwargs
        )
    model.eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(spec.model)
    return Backbone(
        id=spec.id,
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        weights_id=f"{weights_id}|quick_gelu={use_quick}|{precision}",
        quick_gelu=use_quick,
        device=torch.device(device),
    )


def normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)
