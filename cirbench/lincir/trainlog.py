"""A training run's log: ``metrics.jsonl``, a loss-curve PNG and the summary that ``train_meta.json`` carries.

``metrics.jsonl`` gets one line per logging step (``{"kind": "train", "step", "loss", "lr", "samples_per_s"}``)
and one per validation (``{"kind": "val", "step", "selection_metric", "best", <metrics>}``), appended as they
happen so a running job can be followed (``tail -f``, pandas). A resume first drops the lines past the step it
resumes from (they were computed after the last checkpoint and will be computed again), so every step appears once
and none is lost. Only the main rank writes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cirbench.io import append_line, atomic_write_bytes, atomic_write_text

METRICS_FILE = "metrics.jsonl"
LOSS_CURVE = "loss_curve.png"


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (a line cut short by a killed process is left out)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


class TrainLog:
    """Writes a run's ``metrics.jsonl`` (when ``enabled``: the main rank) from step ``start`` on."""

    def __init__(self, out: Path, enabled: bool, start: int, global_batch: int):
        self.path = Path(out) / METRICS_FILE
        self.enabled, self.global_batch = enabled, global_batch
        self._last_step, self._last_train_s = start, 0.0
        if enabled:
            kept = [r for r in read_metrics(self.path) if 0 < r["step"] <= start]
            if self.path.exists():
                atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def train(self, step: int, loss: float, lr: float, train_s: float) -> None:
        """A logging step; samples/s over the steps since the previous line (training time only)."""
        if not self.enabled:
            return
        seconds = train_s - self._last_train_s
        samples = (step - self._last_step) * self.global_batch
        rate = round(samples / seconds, 3) if seconds > 0 else None
        self._last_step, self._last_train_s = step, train_s
        self._append({"kind": "train", "step": step, "loss": _number(loss), "lr": lr, "samples_per_s": rate})

    def validation(self, step: int, metric: str, metrics: Mapping[str, float], best: bool) -> None:
        """A model-selection validation: every metric, which one selects (``selection_metric``), and whether this
        phi became the best."""
        if self.enabled:
            values = {k: _number(v) for k, v in metrics.items()}
            self._append({"kind": "val", "step": step, "selection_metric": metric, "best": best, **values})

    def _append(self, record: dict[str, Any]) -> None:
        append_line(self.path, json.dumps(record))


def _number(value: float) -> float | None:
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None


def summarise(out: Path, write_curve: bool = True) -> dict[str, Any]:
    """What ``train_meta.json`` says about the log (final and minimum loss, steps logged, the files), writing the
    loss curve first when asked."""
    out = Path(out)
    records = read_metrics(out / METRICS_FILE)
    train = [r for r in records if r.get("kind") == "train" and r.get("loss") is not None]
    summary: dict[str, Any] = {"metrics": METRICS_FILE, "logged_steps": len(train)}
    if train:
        lowest = min(train, key=lambda r: r["loss"])
        summary.update(
            final_loss=train[-1]["loss"],
            final_step=train[-1]["step"],
            min_loss=lowest["loss"],
            min_loss_step=lowest["step"],
        )
        if write_curve:
            write_loss_curve(records, out / LOSS_CURVE)
            summary["loss_curve"] = LOSS_CURVE
    return summary


def write_loss_curve(records: list[dict[str, Any]], path: Path, title: str | None = None) -> Path:
    """Training loss per step (and the validation metric on a second axis); a PNG without timestamps. The title
    names the run (``loss_curve_title`` of the folder holding ``path``) unless ``title`` is given. A bare ``Figure``
    (no pyplot): drawing it never switches the backend of a notebook that called ``train``."""
    import io

    from matplotlib.figure import Figure

    path = Path(path)
    train = [r for r in records if r.get("kind") == "train" and r.get("loss") is not None]
    val = [r for r in records if r.get("kind") == "val"]
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], color="#4C72B0", linewidth=1, label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    handles, labels = ax.get_legend_handles_labels()
    metric = next((r["selection_metric"] for r in val if r.get("selection_metric")), None)
    if metric is not None:
        twin = ax.twinx()
        points = [(r["step"], r[metric]) for r in val if r.get(metric) is not None]
        twin.plot([p[0] for p in points], [p[1] for p in points], "o-", color="#DD8452", label=f"val {metric}")
        twin.set_ylabel(f"val {metric}")
        more = twin.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, loc="upper right", fontsize=9)
    ax.set_title(title or loss_curve_title(path.parent), fontsize=10, parse_math=False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return atomic_write_bytes(path, buffer.getvalue())


def loss_curve_title(run_dir: Path) -> str:
    """Two lines: the run (its folder and the one above, ``seed-0/lincir``), then the corpus, backbone and batch
    from the run's ``config.json`` (left out when the folder has none)."""
    from cirbench.lincir.config import CONFIG_FILE

    run = "/".join(Path(run_dir).resolve().parts[-2:])
    try:
        config = json.loads((Path(run_dir) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    config = config if isinstance(config, dict) else {}
    names = [Path(str(c)).name or str(c) for c in config.get("corpora") or []]
    if names:
        corpus = f"corpus {names[0]}" + (f" + {len(names) - 1} more" if len(names) > 1 else "")
    elif config.get("masks"):
        corpus = f"masks {Path(str(config['masks'])).name}"
    else:
        corpus = ""
    details = [corpus] if corpus else []
    if config.get("backbone"):
        details.append(f"backbone {config['backbone']}")
    if config.get("global_batch"):
        details.append(f"batch {config['global_batch']}")
    return f"LinCIR training: run {run}" + ("\n" + " · ".join(details) if details else "")
