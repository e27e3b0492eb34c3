"""The training levers for the hardware limit: which of them a run may use here, and what actually ran.

Each lever is exact (``docs/LINCIR.md``, "Speedups"); each has its own option, off by default:

- ``fused_adamw`` (recipe): ``optim.py``; float rounding differs from the default AdamW, nothing else;
- ``varlen_attention`` (recipe: off, auto, reference, flash): ``varlen.py``; ``auto`` is flash where it can run
  (CUDA, fp16/bf16 towers, packed tokens), else the padded path;
- ``cuda_graphs`` (recipe): the packed tower on ``packplan.py``'s bucketed shapes, captured as CUDA graphs
  (dynamo's ``cudagraphs`` backend; with ``compile``, inductor's ``reduce-overhead``); CUDA only;
- ``host_sync`` (runtime: step, log): ``log`` synchronises the device only at log, validation and checkpoint steps
  (timing covers those intervals), builds packing plans on the host and copies through pinned memory; under DDP
  the stop flag is agreed at those steps too. Bit-identical results;
- ``prefetch`` (runtime): ``batches.py``; step s+1's batch is assembled in a background thread. Bit-identical.

Asking for a lever where it cannot run is a one-line ``TrainError`` naming the fix, never a silent fallback.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from cirbench.backbones import PRECISION_DTYPES
from cirbench.errors import TrainError
from cirbench.lincir import varlen
from cirbench.lincir.objective import SpeedOptions

HOST_SYNC = ("step", "log")


def check(cfg: Any, device: torch.device, precision: str) -> None:
    """What can be refused before anything is loaded: unknown values, and levers this device cannot run."""
    varlen.resolve(cfg.varlen_attention, cfg.pack, device, PRECISION_DTYPES.get(precision, torch.float32))
    if cfg.host_sync not in HOST_SYNC:
        raise TrainError(
            f"host_sync={cfg.host_sync!r} is not one of {', '.join(HOST_SYNC)}; pass --host-sync step or log"
        )
    if cfg.cuda_graphs and device.type != "cuda":
        raise TrainError(f"cuda_graphs=true needs a CUDA device (this run is on {device.type}): pass --no-cuda-graphs")
    if cfg.cuda_graphs and not cfg.pack:
        raise TrainError("cuda_graphs=true captures the packed tower: pass --pack, or --no-cuda-graphs")


def resolve(cfg: Any, device: torch.device, packed: bool, dtype: torch.dtype) -> SpeedOptions:
    """The speed options a run uses on this device with this tower (``packed``: the tower is packed)."""
    if cfg.cuda_graphs and not packed:
        raise TrainError(
            f"cuda_graphs=true captures the packed tower, and {cfg.backbone}'s text tower cannot be packed: "
            "pass --no-cuda-graphs"
        )
    attention = varlen.resolve(cfg.varlen_attention, packed, device, dtype)
    return dataclasses.replace(cfg.speed, pack=packed, attention=attention, graphs=bool(cfg.cuda_graphs))


def record(cfg: Any, speed: SpeedOptions) -> dict[str, Any]:
    """What ran, for ``train_meta.json``'s ``speedups``."""
    return {
        "fused_adamw": cfg.fused_adamw,
        "varlen_attention": speed.attention,  # the kernel: padded, reference or flash (``auto`` resolved)
        "cuda_graphs": speed.graphs,
        "tower_compile": _compiled(speed),
        "host_sync": cfg.host_sync,
        "prefetch": cfg.prefetch,
    }


def _compiled(speed: SpeedOptions) -> str | None:
    if speed.graphs:
        return "cuda-graphs+inductor" if speed.compile else "cuda-graphs"
    return "inductor-dynamic" if speed.compile else None
