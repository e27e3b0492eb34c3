"""Model selection during training: validate every N steps (and at step 50, as upstream) and keep the best.

Upstream scores CIRR val R@1 at step 50 and every 1000 steps and saves ``phi_best.pt`` whenever R@1 strictly
improves; that file is then used for every benchmark. Without validation data the last checkpoint is the result.
The evaluator is a plain callable (phi -> metrics) so the logic is testable without any benchmark data.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

Evaluator = Callable[[torch.nn.Module], Mapping[str, float]]


@dataclass
class ModelSelector:
    """Decides when to validate and whether a validated phi is the new best (strictly greater, as upstream)."""

    evaluate: Evaluator | None
    metric: str = "R@1"
    every: int = 1000
    first: int | None = 50
    description: str = ""
    best_value: float | None = None
    best_step: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    last_metrics: dict[str, float] = field(default_factory=dict)  # every metric of the last validation (the log)

    @property
    def enabled(self) -> bool:
        return self.evaluate is not None and self.every > 0

    def due(self, step: int) -> bool:
        return self.enabled and (step % self.every == 0 or step == self.first)

    def update(self, step: int, phi: torch.nn.Module) -> bool:
        """Score ``phi`` (in eval mode, on a copy) and return True when it beats the best so far."""
        assert self.evaluate is not None
        frozen = copy.deepcopy(phi).eval().requires_grad_(False)
        metrics = dict(self.evaluate(frozen))
        self.last_metrics = {k: float(v) for k, v in metrics.items()}
        if self.metric not in metrics:
            raise KeyError(f"validation returned no {self.metric!r} (got {', '.join(metrics)})")
        value = float(metrics[self.metric])
        improved = self.best_value is None or value > self.best_value
        if improved:
            self.best_value, self.best_step = value, step
        self.history.append({"step": step, self.metric: value, "best": improved})
        return improved

    def state_dict(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_step": self.best_step, "history": list(self.history)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_value = state.get("best_value")
        self.best_step = state.get("best_step")
        self.history = list(state.get("history", []))

    def summary(self) -> dict[str, Any]:
        if not self.enabled:
            return {"strategy": "last", "reason": self.description or "no validation data"}
        return {
            "strategy": f"best {self.metric}",
            "validation": self.description,
            "every": self.every,
            "first": self.first,
            "best_step": self.best_step,
            "best_value": self.best_value,
            "history": self.history,
        }


def validation_evaluator(
    backbone: Any,
    benchmark: str,
    root: str | Path | None,
    split: str = "val",
    batch_size: int = 64,
    options: Mapping[str, Any] | None = None,
    backbone_id: str | None = None,
) -> tuple[Evaluator | None, str]:
    """An evaluator for ``benchmark``/``split`` under ``root``, or (None, why) when its data is not there.

    Each call goes through ``cirbench.evaluation.evaluator`` with the in-training phi and the trainer's backbone, and
    writes no result file.
    """
    if not root:
        return None, "no validation root given: keeping the last checkpoint"
    from cirbench.evaluation import EvalSettings, RunRequest, evaluate, keep_splits, resolve
    from cirbench.evaluation.readiness import why_not_ready
    from cirbench.methods.lincir import method_from_phi

    request = RunRequest(
        method="lincir",
        benchmark=benchmark,
        backbone=backbone_id or backbone.id,
        split=split,
        root=Path(root),
        protocol_options=dict(options or {}),
    )
    spec = resolve(request, prebuilt=True)
    problem = why_not_ready(benchmark, spec.split, spec.root, spec.options)
    if problem:
        return None, f"{benchmark} {split} data not usable under {root} ({problem}): keeping the last checkpoint"
    # As before the feature cache serves fp32 towers only (half-precision towers re-encode the small val gallery).
    settings = EvalSettings(results_dir=None, batch_size=batch_size, use_cache=backbone.dtype == torch.float32)
    splits: dict = {}  # the validation split is read and its images checked once for the whole run

    def evaluate_phi(phi: torch.nn.Module) -> Mapping[str, float]:
        with keep_splits(splits):
            outcome = evaluate(spec, settings, method=method_from_phi(backbone, phi), backbone=backbone)
        return outcome.result.metrics

    return evaluate_phi, f"{benchmark} {split} under {root}"
