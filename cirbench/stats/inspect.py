"""One run, query by query: worst first, with the reference, the text, the targets and where the first target ranked,
and a picture of the worst and best queries with their top results."""

from __future__ import annotations

import io
import math
import textwrap
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


GRID_FORMATS = ("png", "pdf")
FONT = 9  # points at the saved size: readable in a paper's figure at 100 % (the grid is drawn at its final size)
CELL = 1.25  # inches per image
LABEL_WIDTH = 2.3  # inches of the row-label column
LABEL_CHARS = 30  # characters per label line at FONT points in LABEL_WIDTH


def grid_heading(run: RunScores, metric: str, title: str | None = None, label: str | None = None) -> tuple[str, str]:
    """The grid's two heading lines: what was evaluated (benchmark, split, method, backbone; ``title`` replaces it)
    and which run (key and result file; ``label`` replaces them), with what a row's rank and metric mean."""
    result = run.result
    method = result.method.name + (f" ({result.method.variant})" if result.method.variant else "")
    bench = f"{run.benchmark.display_name} {result.benchmark.split}"
    heading = title or f"{bench} · {method} · {result.backbone.id}"
    name = f" ({Path(result.path).name})" if result.path is not None else ""
    who = label or f"run {result.run_key}{name}"
    depth = _depth(run)
    return heading, f"{who} · {len(run.scores.query_ids)} queries · rank: the first target's place in the top {depth}"


def row_label(record: dict, metric: str, kind: str, depth: int, width: int = LABEL_CHARS) -> str:
    """One grid row's label: the query id, its text (wrapped, at most three lines), where its first target ranked
    and its value of ``metric`` (``kind`` ``"rate"``: a hit or a miss; otherwise the value)."""
    text = textwrap.wrap(f"\u201c{record['text']}\u201d", width) or [""]
    if len(text) > 3:
        text = [*text[:2], textwrap.shorten(" ".join(text[2:]), width, placeholder=" …")]
    rank = record.get("first_target_rank")
    several = len(str(record.get("targets") or "").split()) > 1
    where = f"not in top {depth}" if rank is None or pd.isna(rank) else str(int(rank))
    value = record.get(metric)
    if value is None or pd.isna(value):
        shown = f"{metric}: no value"
    elif kind == "rate":
        shown = f"{metric} {'hit' if value > 0 else 'miss'}"
    else:
        shown = f"{metric} = {float(value):.2f}"
    return "\n".join([str(record["query_id"]), *text, f"rank of {'first ' if several else ''}target: {where}", shown])


def write_grid(
    run: RunScores,
    table: pd.DataFrame,
    path: Path,
    n: int = 4,
    k: int = 5,
    *,
    fmt: str = "png",
    title: str | None = None,
    label: str | None = None,
) -> Path:
    """The ``n`` worst and ``n`` best queries of ``table`` (worst first, from ``per_query_table``), a block each
    under its own heading with a rule between them. A row: its label (``row_label``), the reference, the first
    target and the top ``k`` (a target framed in green, others in red). Drawn at its final size with ``FONT``-point
    text; ``fmt="pdf"`` is vector (TrueType fonts: the text stays text; the images are the dataset's pixels). A bare
    ``Figure`` (no pyplot); the file has no timestamp or software field, so it is deterministic."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if fmt not in GRID_FORMATS:
        raise ValueError(f"grid format {fmt!r}: one of {', '.join(GRID_FORMATS)}")
    metric = next(c for c in table.columns if c not in _TABLE_COLUMNS)
    rule = run.scores.rules.get(metric)
    kind, depth = (rule.kind if rule else "mean"), _depth(run)
    worst = table.head(n)
    best = table.iloc[len(worst) :].tail(n)
    blocks = [(f"Worst {len(worst)} of {len(table)} queries (lowest {metric} first)", worst)]
    if len(best):
        blocks.append((f"Best {len(best)} of {len(table)} queries (the best last)", best))
    heading, who = grid_heading(run, metric, title, label)
    rows = sum(len(b) for _, b in blocks)
    fig = Figure(figsize=(LABEL_WIDTH + CELL * (k + 2), CELL * rows + 0.55 * len(blocks) + 0.7), layout="constrained")
    fig.get_layout_engine().set(h_pad=0.03, w_pad=0.03, hspace=0.02, wspace=0.02)
    fig.suptitle(f"{heading}\n{who}", fontsize=FONT + 1, parse_math=False)
    subfigs = fig.subfigures(len(blocks), 1, height_ratios=[len(b) + 0.45 for _, b in blocks], squeeze=False)[:, 0]
    top = load_rankings(run.result)["top"]
    for index, (subfig, (caption, block)) in enumerate(zip(subfigs, blocks, strict=True)):
        subfig.suptitle(caption, fontsize=FONT, fontweight="bold", x=0.005, ha="left", parse_math=False)
        if not index:
            subfig.text(
                0.995,
                0.995,
                "frame: green = a target, red = another image",
                fontsize=FONT,
                ha="right",
                va="top",
                transform=subfig.transSubfigure,
            )
        else:  # the rule between the worst and the best
            subfig.add_artist(Line2D([0, 1], [1, 1], transform=subfig.transSubfigure, color="#333333", linewidth=1.5))
        axes = subfig.subplots(len(block), k + 3, squeeze=False, width_ratios=[LABEL_WIDTH / CELL] + [1] * (k + 2))
        for r, (row, record) in enumerate(zip(axes, block.to_dict("records"), strict=True)):
            row[0].axis("off")
            row[0].text(
                0,
                0.5,
                row_label(record, metric, kind, depth),
                fontsize=FONT,
                va="center",
                ha="left",
                linespacing=1.15,
                parse_math=False,
                transform=row[0].transAxes,
            )
            _draw_cells(run, row[1:], record, top.get(record["query_id"], []), k, header=r == 0)
    buffer = io.BytesIO()
    metadata = {"Software": None} if fmt == "png" else {"Creator": None, "Producer": None, "CreationDate": None}
    if fmt == "pdf":
        metadata["Title"] = heading
    with matplotlib.rc_context({"pdf.fonttype": 42}):  # TrueType: text stays searchable text (no Type 3 glyphs)
        fig.savefig(buffer, format=fmt, dpi=100, metadata=metadata)
    return atomic_write_bytes(path, buffer.getvalue())


_TABLE_COLUMNS = ("query_id", "part", "reference", "text", "targets", "first_target_rank")


def _depth(run: RunScores) -> int:
    """How deep the stored rankings go (a rank beyond it is "not in top ``depth``")."""
    return max((len(v) for v in load_rankings(run.result)["top"].values()), default=0)


def _draw_cells(run: RunScores, axes, record: dict, ranked: list[str], k: int, header: bool) -> None:  # type: ignore[no-untyped-def]
    targets = str(record.get("targets") or "").split()
    cells = [("reference", record["reference"], None), ("target", targets[0] if targets else None, None)]
    cells += [(f"#{i + 1}", key, key in targets) for i, key in enumerate(ranked[:k])]
    cells += [("", None, None)] * (k + 2 - len(cells))
    for ax, (name, key, hit) in zip(axes, cells, strict=True):
        ax.set_xticks([])
        ax.set_yticks([])
        image = _image(run, key)
        if image is not None:
            ax.imshow(image)
        elif key is not None:
            ax.text(0.5, 0.5, "unreadable", ha="center", va="center", fontsize=FONT, transform=ax.transAxes)
        if key is None:
            ax.axis("off")
        if hit is not None:
            for spine in ax.spines.values():
                spine.set_edgecolor("#2ca02c" if hit else "#d62728")
                spine.set_linewidth(3 if hit else 1)
        if header:
            ax.set_title(name, fontsize=FONT)


def _image(run: RunScores, key: str | None):
    ref = run.data.images.get(key) if key else None
    if ref is None:
        return None
    try:
        return run.benchmark.open_image(ref)
    except Exception:  # noqa: BLE001 - a missing image leaves its cell empty
        return None
