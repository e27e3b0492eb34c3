"""The training process group (torchrun, DDP) and the few collectives the loop needs.

Every helper is a no-op for a single process, so the loop reads the same with or without ``torchrun``. When one
rank fails, the CLI boundary (``cirbench.commands.boundary``) tells the others through the group's store and each
rank ends with one line; the group is left to the process's exit (a teardown while a peer is gone can block).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch

from cirbench.torchrun import Dist, check_environment, join, world_size


def init_distributed(device_type: str) -> Dist:
    """Join the torchrun process group (NCCL on GPU, gloo on CPU); a single process needs none."""
    world = world_size("train lincir")  # a value that is no whole number >= 1 is one line
    if world <= 1:
        return Dist()
    check_environment(world, "train lincir")
    import torch.distributed as dist

    if not dist.is_initialized():  # a rank whose peers never start waits a bounded time, not the 2-hour timeout
        join("nccl" if device_type == "cuda" else "gloo", "train lincir", timedelta(hours=2))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), local_world)


def barrier(d: Dist) -> None:
    if d.enabled:
        torch.distributed.barrier()


def broadcast(d: Dist, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (a picklable object)."""
    if not d.enabled:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(d: Dist, flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on one (e.g. a stop signal that reached one process)."""
    if not d.enabled:
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def mean_over_ranks(d: Dist, value: torch.Tensor) -> float:
    """The mean of a scalar over ranks (the logged loss)."""
    if d.enabled:
        value = value.detach().clone()
        torch.distributed.all_reduce(value)
        value /= d.world
    return float(value.item())
