"""Reading released checkpoints safely: ``torch.load(weights_only=True)``, prefixes, strict loads, dimension checks.

Shared by every adapter of a released mapper (SEARLE's phi, Pic2Word's IM2TEXT, LinCIR's official ``.pt``), so the
errors a user sees are the same whichever checkpoint is wrong.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cirbench.errors import MethodError


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
    what: str, in_dim: int, out_dim: int, backbone: Any, path: Path | str, expected: str | None = None
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
