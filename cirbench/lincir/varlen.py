"""Causal attention kernels for the packed tower, and which one a run may use.

A variable-length kernel takes the packed q, k, v of one block as (T, H, Dh) with the plan's cumulative row spans
and returns (T, H, Dh), each row attending causally within itself only. That is what the padded path
(``packed.py``: scatter into a zero-padded (B, L) buffer, causal SDPA there) computes, so every kernel gives the
same values (float rounding aside) and the same gradients.

- ``padded`` (``varlen_attention=off``, the default): any device, any dtype;
- ``reference``: causal SDPA per row, a loop (any device; slow: it exists to test the plumbing on the CPU);
- ``flash``: ``torch.nn.attention.varlen.varlen_attn`` (flash attention on CUDA, fp16/bf16 only), no padding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cirbench.errors import TrainError

KERNELS = ("padded", "reference", "flash")
CHOICES = ("off", "auto", "reference", "flash")  # the ``varlen_attention`` option; off = padded


@torch.compiler.disable  # a Python loop over rows: never traced (it would specialise on every batch's lengths)
def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, max_len: int) -> torch.Tensor:
    """Causal SDPA row by row on the packed tensors (reads the spans on the host: a test kernel, not a fast one)."""
    bounds = cu.tolist()
    spans = [end - start for start, end in zip(bounds[:-1], bounds[1:], strict=True)]
    # flash's contract, checked here so that CPU tests of this kernel also prove the arguments flash gets are right
    if cu.dtype != torch.int32 or bounds[0] != 0 or bounds[-1] != q.shape[0] or max(spans) > max_len:
        raise ValueError(f"varlen arguments break flash's contract: cu_seqlens {cu.dtype} {bounds}, max_len {max_len}")
    pieces = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        rows = [t[start:end].transpose(0, 1) for t in (q, k, v)]  # (H, n, Dh)
        pieces.append(F.scaled_dot_product_attention(*rows, is_causal=True).transpose(0, 1))
    return torch.cat(pieces)


def flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, max_len: int) -> torch.Tensor:
    """Flash attention over variable-length rows (bottom-right causal window (-1, 0): each row's own prefix)."""
    from torch.nn.attention.varlen import varlen_attn

    return varlen_attn(q, k, v, cu, cu, max_len, max_len, window_size=(-1, 0))


VARLEN: dict[str, Callable[..., torch.Tensor]] = {"reference": reference, "flash": flash}  # padded: packed.py


def flash_unavailable(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why the flash varlen kernel cannot run here, or None when it can."""
    if device.type != "cuda":
        return f"it needs a CUDA device (this run is on {device.type})"
    if dtype not in (torch.float16, torch.bfloat16):
        return f"it needs fp16 or bf16 towers (these are {str(dtype).replace('torch.', '')}): pass --precision fp16"
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen"
    return None


def resolve(choice: str, packed: bool, device: torch.device, dtype: torch.dtype) -> str:
    """The kernel a run uses for ``varlen_attention=choice``: ``auto`` is flash where it can run, else padded; an
    explicit choice that cannot run is a one-line ``TrainError``."""
    if choice not in CHOICES:
        raise TrainError(f"varlen_attention={choice!r} is not one of {', '.join(CHOICES)}; pass --varlen-attention off")
    if choice == "off":
        return "padded"
    if not packed:
        if choice == "auto":
            return "padded"
        raise TrainError(
            f"varlen_attention={choice} runs on packed tokens: turn packing on (--pack) with a standard open_clip "
            "causal text tower, or pass --varlen-attention off"
        )
    why = flash_unavailable(device, dtype)
    if choice == "flash" and why:
        raise TrainError(f"varlen_attention=flash cannot run: {why}; or pass --varlen-attention auto, reference or off")
    if choice == "auto":
        return "padded" if why else "flash"
    return choice
