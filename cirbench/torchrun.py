"""A process's place in a torchrun group, shared by distributed training (``lincir.distributed``) and distributed
evaluation (``evaluation.distributed``): one definition, so both read ranks the same way."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

from cirbench.errors import DistributedError, UserError, shown


@dataclass(frozen=True)
class Dist:
    """This process's place in the group (rank 0 of 1 when not under torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def _launch(command: str) -> str:
    return f"start a distributed run with `torchrun --nproc_per_node N -m cirbench {command} ...`, or unset WORLD_SIZE"


def _whole(name: str, command: str, low: int = 0, high: int | None = None) -> int:
    """The environment variable ``name`` as a whole number in [low, high) (one line naming it otherwise)."""
    text = os.environ.get(name, "")
    try:
        value = int(text.strip())
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value >= high):
        span = f"a whole number >= {low}" if high is None else f"a whole number in [{low}, {high - 1}]"
        raise DistributedError(f"{name}={shown(text)} is not {span}; {_launch(command)}")
    return value


def world_size(command: str) -> int:
    """``WORLD_SIZE`` (1 when unset), refused in one line when it is not a positive whole number."""
    if not os.environ.get("WORLD_SIZE", "").strip():
        return 1
    return _whole("WORLD_SIZE", command, low=1)


def check_environment(world: int, command: str) -> None:
    """A ``WORLD_SIZE`` > 1 without the rest of torchrun's variables, or with values that cannot be (``RANK`` not
    below ``WORLD_SIZE``, a port that is no port), is one line (not torch's ValueError, nor a wait for ranks that
    cannot exist)."""
    missing = [name for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise DistributedError(f"WORLD_SIZE={world} is set but {', '.join(missing)} is not; {_launch(command)}")
    _whole("RANK", command, high=world)
    _whole("LOCAL_RANK", command, high=world)
    _whole("MASTER_PORT", command, low=1, high=65536)


JOIN_S = 120.0  # how long a rank launched without torchrun waits for the others to start
JOIN_ENV = "CIRBENCH_JOIN_TIMEOUT_S"


def join(backend: str, command: str, timeout: timedelta) -> None:
    """Join the default process group, waiting at most ``CIRBENCH_JOIN_TIMEOUT_S`` (120 s) for the other ranks.

    Why: ``init_process_group`` waits as long as its collective ``timeout`` (hours) for ranks that were never
    started (``WORLD_SIZE=2`` set by hand, one process launched): a hang. The store is made first with the short
    wait (under torchrun every rank is started and the agent's store is joined at once), then given ``timeout``."""
    import torch.distributed as dist
    from torch.distributed.rendezvous import _create_c10d_store

    world = world_size(command)
    check_environment(world, command)
    rank, port = int(os.environ["RANK"]), int(os.environ["MASTER_PORT"])
    address = os.environ["MASTER_ADDR"]
    try:
        wait = float(os.environ.get(JOIN_ENV, "") or JOIN_S)
    except ValueError:
        wait = float("nan")
    if not wait > 0 or wait == float("inf"):
        raise DistributedError(f"{JOIN_ENV}={shown(os.environ.get(JOIN_ENV))} is not a number of seconds > 0")
    try:
        kv = _create_c10d_store(address, port, rank, world, timedelta(seconds=wait))
    except (RuntimeError, OSError) as error:  # DistStoreError (timed out), DistNetworkError (port taken)
        why = " ".join(str(error).split())[:160]
        raise DistributedError(
            f"rank {rank} of {world} could not meet the other ranks at {address}:{port} within {wait:g} s ({why}); "
            f"start all {world} processes, e.g. `torchrun --nproc_per_node {world} -m cirbench {command} ...` "
            f"(or raise {JOIN_ENV})"
        ) from None
    kv.set_timeout(timeout)
    prefixed = dist.PrefixStore("default_pg", kv)  # as init_process_group's own env:// rendezvous leaves it
    dist.init_process_group(backend, store=prefixed, rank=rank, world_size=world, timeout=timeout)


# --- one failing rank stops every rank with one line ---------------------------------------------------------------
# Why: when one rank raises, the others are blocked in a collective and later get a backend error (gloo's "connection
# closed by peer") or torchrun's SIGTERM. The failing rank writes one key to the group's store (torchrun's agent
# hosts it, so it outlives every worker) before it exits; a rank whose collective then fails reads it and says which
# rank stopped it, instead of printing the backend's traceback. Both ends go through the CLI boundary
# (``cirbench.commands.boundary``); nothing here imports torch unless a process group already exists.

_FAILED = "cirbench/failed/{rank}"


def from_env() -> Dist | None:
    """This process's place when it runs under torchrun (``WORLD_SIZE`` > 1 and ``RANK`` set), else None."""
    try:
        world, rank = int(os.environ.get("WORLD_SIZE", "1") or 1), int(os.environ.get("RANK", ""))
    except ValueError:
        return None
    return Dist(rank, world, int(os.environ.get("LOCAL_RANK", "0") or 0)) if world > 1 else None


def store():  # type: ignore[no-untyped-def]
    """The default process group's key-value store, or None (no torch imported, no group joined)."""
    import sys

    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # noqa: BLE001 - a group being torn down has no store: nothing to tell
        return None


def announce_failure(rank: int, summary: str) -> None:
    """Tell the other ranks that ``rank`` failed (call before this process exits and its connections close)."""
    kv = store()
    if kv is None:
        return
    try:
        kv.set(_FAILED.format(rank=rank), summary.encode("utf-8")[:2000])
    except Exception:  # noqa: BLE001 - the store is gone too: the others will report lost contact
        pass


def failed_ranks(me: Dist) -> list[int]:
    """The other ranks that announced a failure (empty when none did, or the store cannot be reached)."""
    kv = store()
    if kv is None:
        return []
    found = []
    for rank in range(me.world):
        if rank == me.rank:
            continue
        try:
            if kv.check([_FAILED.format(rank=rank)]):
                found.append(rank)
        except Exception:  # noqa: BLE001 - the store's host is gone: nothing more to learn
            break
    return found


def is_backend_failure(error: BaseException) -> bool:
    """True for an error raised inside ``torch.distributed`` (a collective whose peer died or timed out)."""
    if any(cls.__name__ == "DistError" for cls in type(error).__mro__):
        return True
    if not isinstance(error, RuntimeError) or isinstance(error, UserError):
        return False
    tb, last = error.__traceback__, None
    while tb is not None:
        last, tb = tb.tb_frame.f_code.co_filename, tb.tb_next
    if last is not None and "torch/distributed/" in last.replace("\\", "/"):
        return True
    # DDP's gradient all-reduce fails inside autograd's C++ engine: recognise the backends' own words there
    text = str(error).lower()
    return store() is not None and any(word in text for word in _BACKEND_WORDS)


_BACKEND_WORDS = ("gloo", "nccl", "connection closed by peer", "connection reset by peer", "broken pipe", "timed out")
