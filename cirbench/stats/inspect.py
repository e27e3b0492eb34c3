"""One run, query by query: worst first, with the reference, the text, the targets and where the first target ranked,
and a picture of the worst and best queries with their top results."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from cirbench.io import atomic_write_bytes
from cirbench.results import load_rankings
from cirbench.stats.runs import RunScores


def per_query_table(run: RunScores, metric: str | None = None) -> pd.DataFrame:
    """A row per query, worst first: id, reference, text, target(s), rank of the first target, the metric's value."""
    metric = metric or _per_query_metric(run)
    top = load_rankings(run.result)["top"]
    by_id = {q.qid: q for q in run.data.queries}
    values = run.scores.values[metric]
    rows = []
    for qid, part, value in zip(run.scores.query_ids, run.scores.strata, values, strict=True):
        q = by_id[qid]
        targets = list(q.gt or ((q.target,) if q.target else ()))
        ranked = top.get(qid, [])
        first = next((i + 1 for i, key in enumerate(ranked) if key in targets), None)
        rows.append(
            {
                "query_id": qid,
                "part": part,
                "reference": q.reference,
                "text": " | ".join(run.benchmark.query_texts(q)),
                "targets": " ".join(targets),
                "first_target_rank": first,
                metric: None if math.isnan(value) else float(value),
            }
        )
    frame = pd.DataFrame(rows)
    worst_rank = frame["first_target_rank"].fillna(len(max(top.values(), key=len, default=[])) + 1)
    order = np.lexsort((-worst_rank.to_numpy(), frame[metric].fillna(-1).to_numpy()))
    frame = frame.iloc[order].reset_index(drop=True)
    frame["first_target_rank"] = frame["first_target_rank"].astype("Int64")  # a rank, or empty when not in the list
    return frame


def _per_query_metric(run: RunScores) -> str:
    """The benchmark's main metric if it has per-query values, else the first one that does."""
    main = run.result.main_metric
    if main in run.scores.values:
        return main
    rule = run.scores.rules.get(main)
    leaves = [o for o in (rule.of if rule else ()) if o in run.scores.values]
    return leaves[0] if leaves else next(iter(run.scores.values))


def write_grid(run: RunScores, table: pd.DataFrame, path: Path, n: int = 4, k: int = 5) -> Path:
    """The ``n`` worst and ``n`` best queries: reference, text, first target, top ``k`` (hits framed in green)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = load_rankings(run.result)["top"]
    chosen = [*table.head(n).itertuples(), *table.tail(n).itertuples()]
    fig, axes = plt.subplots(len(chosen), k + 2, figsize=(1.6 * (k + 2), 1.9 * len(chosen)), squeeze=False)
    for row, item in zip(axes, chosen, strict=True):
        targets = set(str(item.targets).split())
        cells = [("reference", item.reference, None), ("target", sorted(targets)[0] if targets else None, None)]
        cells += [(f"#{i + 1}", key, key in targets) for i, key in enumerate(top.get(item.query_id, [])[:k])]
        for ax, (title, key, hit) in zip(row, cells + [("", None, None)] * (k + 2 - len(cells)), strict=True):
            ax.set_xticks([])
            ax.set_yticks([])
            image = _image(run, key)
            if image is not None:
                ax.imshow(image)
            elif key is not None:
                ax.text(0.5, 0.5, "unreadable", ha="center", va="center", fontsize=6)
            if hit is not None:
                for spine in ax.spines.values():
                    spine.set_edgecolor("#2ca02c" if hit else "#d62728")
                    spine.set_linewidth(3 if hit else 1)
            ax.set_title(title, fontsize=7)
        row[0].set_ylabel(f"{item.query_id}\n{str(item.text)[:40]}", fontsize=6, rotation=0, ha="right", va="center")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def _image(run: RunScores, key: str | None):
    ref = run.data.images.get(key) if key else None
    if ref is None:
        return None
    try:
        return run.benchmark.open_image(ref)
    except Exception:  # noqa: BLE001 - a missing image leaves its cell empty
        return None
