"""The phi network (SEARLE's textual-inversion MLP, which LinCIR copies) and LinCIR's two checkpoint formats.

Shared by inference (the ``lincir`` and ``searle`` methods) and training (``cirbench.lincir``), so neither imports
the other.

phi is the official ``models.Phi`` (copied from SEARLE): Linear(D, 4D) -> GELU -> Dropout(p) -> Linear(4D, 4D) ->
GELU -> Dropout(p) -> Linear(4D, W), no input normalisation, state-dict keys ``layers.0/3/6.{weight,bias}``. D is the
CLIP joint-embedding dim, W the text-transformer width.

Formats:
- official ``.pt``: ``{"epoch": int, "Phi": state_dict}`` (what ``train_phi.py`` saves and ``lincir_large.pt`` is);
  loaded with ``torch.load(weights_only=True)``;
- cirbench ``.safetensors``: the same state dict plus string metadata (format, backbone id, recipe JSON, step, dims).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cirbench.errors import MethodError, shown
from cirbench.finite import require_finite_state_dict
from cirbench.identity import tensors_sha256
from cirbench.io import atomic_write, atomic_write_torch
from cirbench.weight_errors import library_errors

SAFETENSORS_FORMAT = "cirbench-lincir-phi/1"
OFFICIAL_KEY = "Phi"
OFFICIAL_LAYOUT = '{"Phi": state dict} as train_phi.py saves it, or a phi state dict'
LOAD_FIX = "the file is truncated or not a LinCIR phi checkpoint: pass a run directory, its .safetensors or a .pt"
PHI_FIX = "the run that wrote it diverged or the file is damaged: use another checkpoint (a run keeps earlier ones)"


class PhiCheckpointError(MethodError):
    """A phi checkpoint that is unreadable or does not fit the backbone."""


class Phi(nn.Module):
    """Official LinCIR phi. ``dropout_masks`` lets a caller supply the two dropout masks (already scaled by
    ``1/(1-p)``), so the trainer can draw them for the global batch and stay independent of the device count."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, dropout: float = 0.5):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(p=dropout),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(p=dropout),
            nn.Linear(hidden_dim, output_dim),
        )

    @property
    def dims(self) -> tuple[int, int, int]:
        first, last = self.layers[0], self.layers[6]
        return first.in_features, first.out_features, last.out_features

    @property
    def dropout(self) -> float:
        return float(self.layers[2].p)

    def forward(self, x: torch.Tensor, dropout_masks: tuple[torch.Tensor, torch.Tensor] | None = None):
        if dropout_masks is None or not self.training:
            return self.layers(x)
        layers = self.layers
        h = layers[1](layers[0](x)) * dropout_masks[0]
        h = layers[4](layers[3](h)) * dropout_masks[1]
        return layers[6](h)

    @classmethod
    def for_backbone(cls, embed_dim: int, token_dim: int, dropout: float = 0.5) -> Phi:
        """The official sizing: input = joint-embedding dim D, hidden = 4D, output = token width W."""
        return cls(embed_dim, 4 * embed_dim, token_dim, dropout)


def dims_from_state_dict(state: Mapping[str, torch.Tensor]) -> tuple[int, int, int]:
    try:
        w0, w6 = state["layers.0.weight"], state["layers.6.weight"]
    except KeyError as error:
        raise PhiCheckpointError(
            f"not a LinCIR phi state dict: missing {error.args[0]!r} (keys: {', '.join(list(state)[:8])})"
        ) from error
    for name, weight in (("layers.0.weight", w0), ("layers.6.weight", w6)):
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
            found = f"{weight.ndim}-d tensor" if isinstance(weight, torch.Tensor) else type(weight).__name__
            raise PhiCheckpointError(f"not a LinCIR phi state dict: {name} is a {found}, not a matrix")
    return int(w0.shape[1]), int(w0.shape[0]), int(w6.shape[0])


def _strip_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a DDP/compile wrapper prefix (``module.``, ``_orig_mod.``) if a checkpoint carries one."""
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def phi_from_state_dict(
    state: Mapping[str, torch.Tensor],
    embed_dim: int | None = None,
    token_dim: int | None = None,
    dropout: float = 0.5,
    source: str = "checkpoint",
    backbone: str = "the backbone",
) -> Phi:
    """Build phi from a state dict, checking its dims against the backbone's (D = embed dim, W = token width)."""
    state = _strip_prefix(state)
    d_in, hidden, d_out = dims_from_state_dict(state)
    if (embed_dim is not None and d_in != embed_dim) or (token_dim is not None and d_out != token_dim):
        raise PhiCheckpointError(
            f"phi in {source} maps D={d_in} -> W={d_out} (hidden {hidden}), but {backbone} has embedding dim "
            f"D={embed_dim} and token width W={token_dim}: this checkpoint was trained for another backbone"
        )
    phi = Phi(d_in, hidden, d_out, dropout)
    expected = f"phi {d_in}-{hidden}-{hidden}-{d_out} (layers.0/3/6 weight and bias)"
    with library_errors(PhiCheckpointError, "phi", source, expected, "is it a LinCIR phi checkpoint?"):
        phi.load_state_dict(state, strict=True)
    return phi


def save_official(phi: Phi, path: str | os.PathLike, step: int = 0) -> Path:
    """Write an official-format ``.pt`` (``{"epoch": step, "Phi": state_dict}``), atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in phi.state_dict().items()}
    return atomic_write_torch(path, {"epoch": int(step), OFFICIAL_KEY: state})


def load_official(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The phi state dict of an official ``.pt`` (``weights_only=True``: no pickled code is run)."""
    with library_errors(PhiCheckpointError, "a LinCIR phi", path, OFFICIAL_LAYOUT, LOAD_FIX, "read"):
        obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and isinstance(obj.get(OFFICIAL_KEY), Mapping):
        return dict(obj[OFFICIAL_KEY])
    if isinstance(obj, Mapping) and "layers.0.weight" in _strip_prefix(obj):
        return dict(obj)
    keys = shown(list(map(str, obj))) if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
    raise PhiCheckpointError(
        f"{path} has no {OFFICIAL_KEY!r} entry holding a state dict (found: {keys}); expected {OFFICIAL_LAYOUT}"
    )


def save_safetensors(
    phi: Phi,
    path: str | os.PathLike,
    backbone: str,
    step: int,
    recipe: Mapping[str, Any] | None = None,
    extra: Mapping[str, str] | None = None,
) -> Path:
    """Write phi as safetensors with metadata (backbone id, recipe, step, dims), atomically."""
    from safetensors.torch import save

    d_in, hidden, d_out = phi.dims
    metadata = {
        "format": SAFETENSORS_FORMAT,
        "backbone": backbone,
        "step": str(int(step)),
        "recipe": json.dumps(dict(recipe or {}), sort_keys=True, default=str),
        "input_dim": str(d_in),
        "hidden_dim": str(hidden),
        "output_dim": str(d_out),
        "dropout": str(phi.dropout),
        **dict(extra or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in phi.state_dict().items()}
    return atomic_write(path, save(state, metadata=metadata))


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    with library_errors(PhiCheckpointError, "a LinCIR phi", path, "a safetensors file", LOAD_FIX, "read"):
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    return state, metadata


def read_phi_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict, metadata) of a ``.safetensors`` (cirbench) or ``.pt`` (official) phi file; no model built."""
    path = Path(path)
    if not path.is_file():
        raise PhiCheckpointError(f"phi checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        state, metadata = load_safetensors(path)
    else:
        state, metadata = load_official(path), {"format": "official"}
    strays = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if strays:
        raise PhiCheckpointError(f"{path} is not a LinCIR phi checkpoint: {shown(strays)} hold no tensor")
    require_finite_state_dict(state, "LinCIR phi weights", path, PHI_FIX)
    return state, metadata


def phi_weights_id(path: str | os.PathLike) -> str:
    """Hash of phi's tensors as loaded (fp32, wrapper prefixes dropped), not of the file: a checkpoint's metadata
    (corpus paths, checkpoint cadence) must not change what identifies its weights."""
    state, _ = read_phi_file(path)
    return tensors_sha256({k: v.float() for k, v in _strip_prefix(state).items()})


def load_phi(
    path: str | os.PathLike,
    embed_dim: int | None = None,
    token_dim: int | None = None,
    backbone: str | None = None,
) -> tuple[Phi, dict[str, str]]:
    """Load phi from a ``.safetensors`` (cirbench) or ``.pt`` (official) file; returns (phi in eval mode, metadata).

    A cirbench checkpoint trained on another backbone id is refused even when the dims agree.
    """
    state, metadata = read_phi_file(path)
    dropout = float(metadata.get("dropout", 0.5))
    trained_on = metadata.get("backbone")
    if backbone and trained_on and not _same_backbone(trained_on, backbone):
        raise PhiCheckpointError(f"{path} was trained on backbone {trained_on}, not {backbone}")
    phi = phi_from_state_dict(
        state, embed_dim, token_dim, dropout, source=str(path), backbone=backbone or "the backbone"
    )
    return phi.eval(), metadata


def _same_backbone(a: str, b: str) -> bool:
    from cirbench.backbones import parse_backbone_id

    try:
        return parse_backbone_id(a).id == parse_backbone_id(b).id
    except Exception:  # noqa: BLE001 - unparsable ids: compare literally
        return a == b
