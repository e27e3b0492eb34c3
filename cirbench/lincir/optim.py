"""phi's AdamW: torch's default implementation or the fused one, with one checkpoint format for both.

Why fused: the default implementation launches several kernels per parameter tensor and step (foreach on CUDA);
the fused one does the whole update in one kernel per device and dtype, and with fp16 towers it takes the
GradScaler's inverse scale and inf flag on the device, so ``scaler.step`` no longer reads the flag back to the host
(one synchronisation per step). It computes the same update; only float rounding differs.

The state dicts are interchangeable: moments and step counts have the same names and values. Only the group flags
(``fused``, ``foreach``, ``capturable``) and where ``step`` lives (on the device for fused) differ, and
``load_state`` keeps the flags of the optimizer it loads into.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch

IMPLEMENTATION_FLAGS = ("fused", "foreach", "capturable")


def adamw(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float, fused: bool) -> torch.optim.AdamW:
    """AdamW with torch's defaults otherwise (the recipe); ``fused`` picks the single-kernel implementation."""
    if fused:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)  # exactly the call before the option existed


def load_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load ``state`` (saved by a fused or an unfused AdamW) into ``optimizer``, keeping its own implementation."""
    state = copy.copy(state)
    groups = []
    for saved, current in zip(state["param_groups"], optimizer.param_groups, strict=False):
        groups.append({**saved, **{k: current[k] for k in IMPLEMENTATION_FLAGS if k in current}})
    state["param_groups"] = groups + list(state["param_groups"][len(groups) :])
    optimizer.load_state_dict(state)
