"""A training step's inputs, assembled on the host and copied to the device, optionally one step ahead.

Assembling step s means: its captions (``BatchPlan``), this rank's rows of every micro-batch from the mask cache,
their packing plans (built on the host: no device read-back), the target-cache reads of rows already cached, and
the copies to the device. None of it depends on phi or on the random draws, so a background thread can do it for
step s+1 while the device computes step s (``Prefetcher``). Rows whose target is missing at assembly time are
looked up again when the step uses them (``TargetCache.complete``): an earlier step may have cached them since, and
the step must read what a step without prefetching would read. So prefetching changes no value, only when the host
work happens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from cirbench.lincir.packplan import PackPlan, plan_pack
from cirbench.lincir.targets import CachedRows, TargetCache
from cirbench.torchrun import Dist

PREFETCH_THREAD = "cirbench-prefetch"


@dataclass
class MicroBatch:
    """One (micro-batch, rank) slice of a step: ids on the host and on the device, plans, cached targets."""

    rows: slice  # this slice's rows of the global batch (its noise and dropout rows)
    orig_host: torch.Tensor  # (b, 77) clean ids on the host (plans for targets computed later)
    orig: torch.Tensor  # (b, 77) on the device
    masked: torch.Tensor  # (b, 77) on the device
    plans: tuple[PackPlan | None, PackPlan | None]  # (clean, masked) plans on the device, when built on the host
    cached: CachedRows | None  # target-cache lookup (values on the device), when the run caches targets

    def device_tensors(self) -> Iterator[torch.Tensor]:
        yield self.orig
        yield self.masked
        for plan in self.plans:
            if plan is not None:
                yield from (plan.ids, plan.flat, plan.positions, plan.rows, plan.ends, plan.cu_seqlens)
        if self.cached is not None:
            yield self.cached.values


class Assembler:
    """``assembler(step)``: this rank's micro-batches of ``step``, on the device.

    ``host_plans``: build packing plans on the host (``bucket_rows``: bucketed to that many rows, for CUDA graphs);
    ``pin``: copy through page-locked memory, so that copies neither block the host nor synchronise the device.
    """

    def __init__(
        self,
        masks: Any,
        plan: Any,
        dist: Dist,
        micro: int,
        accum: int,
        device: torch.device,
        targets: TargetCache | None,
        host_plans: bool,
        pin: bool,
        bucket_rows: int | None = None,
    ):
        self.masks, self.plan, self.dist, self.micro, self.accum = masks, plan, dist, micro, accum
        self.device, self.targets, self.host_plans, self.bucket_rows = device, targets, host_plans, bucket_rows
        self.pin = pin and device.type == "cuda"

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.pin:
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def host_plan(self, tokens: torch.Tensor) -> PackPlan:
        """The plan of host ids ``tokens``, on the device."""
        plan = plan_pack(tokens, rows=self.bucket_rows)
        return (plan.pin_memory() if self.pin else plan).to(self.device, non_blocking=True)

    def __call__(self, step: int) -> list[MicroBatch]:
        d = self.dist
        indices = self.plan.indices(step)
        draws = self.plan.variant_draws(step)
        out = []
        for micro in range(self.accum):
            start = (micro * d.world + d.rank) * self.micro
            rows = slice(start, start + self.micro)
            orig, masked, _ = self.masks.batch(indices[rows], draws[rows])
            plans: tuple[PackPlan | None, PackPlan | None] = (None, None)
            if self.host_plans:  # the clean plan only when every target is computed (no cache)
                plans = (None if self.targets else self.host_plan(orig), self.host_plan(masked))
            cached = None
            if self.targets is not None:
                cached = self.targets.lookup(indices[rows]).to(self.device, non_blocking=True, pin=self.pin)
            out.append(MicroBatch(rows, orig, self.to_device(orig), self.to_device(masked), plans, cached))
        return out


class Prefetcher:
    """``get(step)`` returns step's micro-batches, assembled by a background thread while the previous step ran,
    and starts assembling ``step + 1`` (up to ``end``). On CUDA the thread copies on its own stream; ``get`` makes
    the compute stream wait for those copies. ``close`` (or leaving the ``with``) cancels what is pending and joins
    the thread, so an interrupted run leaves no thread behind."""

    def __init__(self, assemble: Assembler, end: int):
        self.assemble, self.end = assemble, end
        self.device = assemble.device
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=PREFETCH_THREAD)
        self._pending: tuple[int, Future] | None = None

    def _work(self, step: int) -> tuple[list[MicroBatch], Any]:
        if self.stream is None:
            return self.assemble(step), None
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            batch = self.assemble(step)
            event = torch.cuda.Event()
            event.record(self.stream)
        return batch, event

    def get(self, step: int) -> list[MicroBatch]:
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] != step:  # not the step asked for: drop it
            pending[1].cancel()
            pending = None
        future = pending[1] if pending is not None else self._pool.submit(self._work, step)
        batch, event = future.result()
        if step + 1 < self.end:
            self._pending = (step + 1, self._pool.submit(self._work, step + 1))
        if event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            for tensor in (t for micro in batch for t in micro.device_tensors()):
                tensor.record_stream(current)  # made on the copy stream, used on this one
        return batch

    def close(self) -> None:
        self._pending = None
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Inline:
    """No prefetching: ``get(step)`` assembles the step when it is asked for."""

    def __init__(self, assemble: Callable[[int], list[MicroBatch]]):
        self.assemble = assemble

    def get(self, step: int) -> list[MicroBatch]:
        return self.assemble(step)


def batches(assemble: Assembler, prefetch: bool, end: int) -> contextlib.AbstractContextManager:
    """A context manager giving ``get(step)``: a ``Prefetcher`` when ``prefetch``, else inline assembly."""
    return Prefetcher(assemble, end) if prefetch else contextlib.nullcontext(Inline(assemble))
