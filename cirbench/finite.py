"""The finite-numbers guarantee: weights at load, features after encoding, scores before ranking, losses and
parameters in training hold no NaN or infinity, or the run stops with one line naming the component and its file.

Why one module: a NaN weight does not crash anything downstream; it gives a normal-looking result (every score
NaN, every ranking the gallery order: R@1 0, R@50 100). So every boundary where numbers enter or are produced calls
these functions and none re-implements them.

Cost: one reduction per tensor on the tensor's device (for weights a float32 sum, a tenth of the time of
``isfinite(x).all()`` on a CPU; that one finds the culprit after a failure). The host reads the answer once per
call (``require_*``), or, for work done in many pieces on an accelerator, only where it syncs anyway
(``FiniteFlag``: accumulate on the device, check at the end; ``LossWatch``: the training loop's sync points).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from cirbench.errors import NonFiniteError

NUMPY_ROWS = 65536  # rows per slice when checking a (memory-mapped) feature array: bounded temporary memory


def _where(source: object) -> str:
    return f" (from {source})" if source not in (None, "") else ""


def _fail(component: str, source: object, fix: str, detail: str = "") -> NonFiniteError:
    detail = f": {detail}" if detail else ""
    return NonFiniteError(f"{component}{_where(source)} hold NaN or infinite values{detail}; {fix}")


def _all_finite(x: torch.Tensor) -> torch.Tensor:
    """A 0-d bool tensor on ``x``'s device (no host sync): True when every element is finite."""
    if not (x.is_floating_point() or x.is_complex()) or x.numel() == 0:
        return torch.ones((), dtype=torch.bool, device=x.device)
    return torch.isfinite(x).all()


def _no_nan(x: torch.Tensor) -> torch.Tensor:
    if not (x.is_floating_point() or x.is_complex()) or x.numel() == 0:
        return torch.ones((), dtype=torch.bool, device=x.device)
    return ~torch.isnan(x).any()


def _count(x: torch.Tensor) -> str:
    bad = ~torch.isfinite(x.detach())
    nan = int(torch.isnan(x.detach()).sum())
    return f"{int(bad.sum())} of {x.numel()} values ({nan} NaN)"


# --- weights -----------------------------------------------------------------------------------------------------
WEIGHTS_FIX = "the file is damaged or the model that wrote it diverged: use other weights or download them again"


def require_finite_state_dict(
    state: Mapping[str, Any], component: str, source: object = None, fix: str = WEIGHTS_FIX
) -> None:
    """Every floating tensor of ``state`` is finite, or ``NonFiniteError`` naming ``component``, the first bad
    entry and ``source`` (the file). Non-tensor entries (an epoch number) are ignored."""
    tensors = [(k, v) for k, v in state.items() if isinstance(v, torch.Tensor)]
    _require_named(tensors, component, source, fix)


def require_finite_module(module: torch.nn.Module, component: str, source: object = None, fix: str = WEIGHTS_FIX):
    """Every parameter of ``module`` is finite and no buffer holds a NaN (weights after loading, phi after a step).
    Buffers may hold infinities on purpose: a causal attention mask is ``-inf`` above the diagonal."""
    _require_named(list(module.named_parameters()), component, source, fix)
    _require_named(list(module.named_buffers()), component, source, fix, allow_inf=True)


def _require_named(
    tensors: Sequence[tuple[str, torch.Tensor]], component: str, source: object, fix: str, allow_inf: bool = False
) -> None:
    if not tensors:
        return
    check = _no_nan if allow_inf else _all_finite
    with torch.no_grad():
        fast = [_finite_sum(t.detach()) for _, t in tensors] if not allow_inf else None
        if fast is not None and _every(fast):
            return
        flags = [check(t.detach()) for _, t in tensors]
        if _every(flags):
            return
        name, bad = next((n, t) for (n, t), f in zip(tensors, flags, strict=True) if not bool(f))
    raise _fail(component, source, fix, f"{name} has {_count(bad)}")


def _finite_sum(x: torch.Tensor) -> torch.Tensor:
    """A finite fp32 sum proves every element finite (a NaN or an infinity makes it NaN or infinite) at a tenth of
    the cost of ``isfinite(x).all()`` on a CPU; a sum that overflows is only a false alarm, checked exactly."""
    if not x.is_floating_point() or x.numel() == 0:
        return _all_finite(x)
    return torch.isfinite(x.sum(dtype=torch.float32))


def _cheap_all_finite(x: torch.Tensor) -> torch.Tensor:
    """``_all_finite`` at a fraction of its cost where it matters: on the CPU (score chunks of the ranking's hot path;
    ``isfinite`` there builds temporaries several times the chunk's size) a finite fp32 sum proves every element
    finite, and only a sum that is not (a fault, or an overflow of huge finite values) is checked elementwise, which
    costs no device wait on the CPU. Elsewhere the elementwise check stays lazy (no host sync)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.numel() == 0:
        return _all_finite(x)
    flag = torch.isfinite(x.sum())
    return flag if bool(flag) else _all_finite(x)


def _every(flags: Sequence[torch.Tensor]) -> bool:
    """All 0-d bool flags true: one host read per device."""
    devices = {f.device for f in flags}
    return all(bool(torch.stack([f for f in flags if f.device == d]).all()) for d in devices)


# --- features and scores -----------------------------------------------------------------------------------------
def require_finite_tensor(
    x: torch.Tensor | np.ndarray | Sequence[torch.Tensor], component: str, source: object = None, fix: str = ""
) -> None:
    """``x`` (a tensor, a numpy array, or several tensors) is finite, or ``NonFiniteError`` naming ``component``
    (``query features of method X on cirr/val``) and ``source``. One reduction per tensor, one host read."""
    fix = fix or "the model or method produced them: check its weights (a checkpoint that diverged?) and inputs"
    if isinstance(x, np.ndarray):
        require_finite_array(x, component, source, fix)
        return
    parts = [x] if isinstance(x, torch.Tensor) else list(x)
    flag = FiniteFlag()
    for part in parts:
        flag.add(part)
    flag.check(component, source, fix)


def require_finite_array(array: np.ndarray, component: str, source: object = None, fix: str = "") -> None:
    """A numpy array (possibly memory-mapped, e.g. cached features) is finite; checked in row slices so a large
    gallery never needs a full-size temporary."""
    fix = fix or "recompute them"
    if array.dtype.kind not in "fc" or array.size == 0:
        return
    rows = array.shape[0] if array.ndim else 1
    flat = array.reshape(rows, -1) if array.ndim else array.reshape(1, 1)
    for start in range(0, rows, NUMPY_ROWS):
        block = np.asarray(flat[start : start + NUMPY_ROWS])
        if not np.isfinite(block).all():
            bad = ~np.isfinite(block)
            row = start + int(np.argmax(bad.any(axis=1)))
            raise _fail(component, source, fix, f"row {row} is the first bad one")


class FiniteFlag:
    """Finiteness of many tensors, accumulated on their device and read by the host once (``check``): for work
    done in pieces (score chunks, batches) where a read per piece would stall an accelerator."""

    def __init__(self) -> None:
        self._flags: list[torch.Tensor] = []

    def add(self, x: torch.Tensor) -> torch.Tensor:
        """Record ``x``'s finiteness (no host sync); returns ``x`` so it can wrap an expression."""
        flag = _cheap_all_finite(x.detach())
        if self._flags and self._flags[-1].device == flag.device:
            self._flags[-1] = self._flags[-1] & flag
        else:
            self._flags.append(flag)
        return x

    @property
    def ok(self) -> bool:
        return all(bool(f) for f in self._flags)

    def check(self, component: str, source: object = None, fix: str = "") -> None:
        if not self.ok:
            raise _fail(component, source, fix or "check the model and method that produced them")


NAN_FEATURES_FIX = "the backbone produced them: check its weights and precision (fp16 overflow?)"


def require_finite_features(features: Any, backbone_id: str) -> None:
    """Image features (a ``features.FeatureSet``, freshly encoded or read back from the feature cache; None on a
    torchrun rank that holds none) are finite; a cached entry is named with the command that removes it."""
    if features is None:
        return
    if getattr(features, "from_cache", False):
        source = "the feature cache"
        fix = f"remove the entry with `cirbench cache clear --backbone {backbone_id}` and check the backbone's weights"
    else:
        source, fix = None, NAN_FEATURES_FIX
    require_finite_array(features.features, f"image features of backbone {backbone_id}", source, fix)


# --- training ----------------------------------------------------------------------------------------------------
class LossWatch:
    """The training loss's finiteness, step by step, without a host sync of its own.

    ``record(loss, step)`` keeps the first step whose loss was not finite in a device tensor; ``verify(step,
    params)`` reads it (with phi's parameters' finiteness, in one read) where the loop syncs anyway, every step with
    ``host_sync=step``, at log, checkpoint and validation steps with ``host_sync=log``, so no checkpoint holding
    non-finite weights is ever written. Under DDP the answer is reduced over ranks so every rank stops together.
    """

    def __init__(self, device: torch.device | str, run: object = None, fix: str = "") -> None:
        self.device = torch.device(device)
        self.run = run
        self.fix = fix or "the run diverged: lower the learning rate or check the corpus, then start it again"
        self._first_bad = torch.full((), -1, dtype=torch.long, device=self.device)

    def record(self, loss: torch.Tensor, step: int) -> None:
        """``step``: as the log and the checkpoints count it (the first step is 1)."""
        bad = ~torch.isfinite(loss.detach()).all()
        self._first_bad = torch.where(bad & (self._first_bad < 0), step, self._first_bad)

    def verify(self, step: int, params: Iterable[torch.Tensor] = ()) -> None:
        """Raise ``NonFiniteError`` naming the first bad loss step, or the parameters after ``step``."""
        with torch.no_grad():
            flags = [_all_finite(p.detach()).to(self.device) for p in params]
            params_ok = torch.stack(flags).all() if flags else torch.ones((), dtype=torch.bool, device=self.device)
            state = torch.stack([self._first_bad, (~params_ok).long()])
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(state, op=torch.distributed.ReduceOp.MAX)
            first_bad, params_bad = state.tolist()
        where = f" of run {self.run}" if self.run not in (None, "") else ""
        if first_bad >= 0:
            raise NonFiniteError(
                f"training loss at step {first_bad}{where} is NaN or infinite; {self.fix}; no checkpoint "
                "from that step on was written"
            )
        if params_bad:
            raise NonFiniteError(
                f"phi parameters after step {step}{where} hold NaN or infinite values; {self.fix}; they were not "
                "written"
            )
