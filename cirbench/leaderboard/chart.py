"""The leaderboard chart: one panel per (benchmark, split) with that benchmark's headline metric.

Each panel holds only the rows that have a value there, best on top, runs and reported numbers in two colours with a
legend. The synthetic world is drawn apart from the real benchmarks, under its own label: its numbers check the
pipeline and say nothing about how a method does on real data. The rows are the summary table's
(``tables.summary_table``: default protocol only, the latest run per cell), so the chart never shows a number the
summary does not. The PNG is deterministic (no timestamp or software metadata).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cirbench.errors import LeaderboardError
from cirbench.io import atomic_write_bytes
from cirbench.leaderboard.entries import Entry, registered
from cirbench.leaderboard.tables import benchmark_order, headline_metric, summary_column, summary_table, title

COLOURS = {"run": "#4C72B0", "reported": "#B0B0B0"}
LEGEND = {"run": "cirbench run", "reported": "reported (paper / README)"}
TOY_LABEL = "Synthetic world (pipeline check; not comparable with the real benchmarks)"
REAL_LABEL = "Benchmarks"
COLUMNS = 3  # panels per row


@dataclass(frozen=True)
class Bar:
    label: str  # "method (variant) · backbone"
    value: float
    source: str  # "run" or "reported"


@dataclass(frozen=True)
class Panel:
    """One (benchmark, split): its headline metric and the rows that have it, best first."""

    benchmark: str
    split: str
    metric: str
    title: str
    toy: bool
    bars: tuple[Bar, ...]


def is_toy(benchmark: str) -> bool:
    """Whether a benchmark is a synthetic world (its class says so with ``toy``)."""
    bench = registered(benchmark)
    return bool(bench is not None and bench.toy)


def chart_panels(entries: Sequence[Entry]) -> list[Panel]:
    """The panels the chart draws, real benchmarks first (in their leaderboard order, then split), toy ones last."""
    summary = summary_table(entries)
    pairs = sorted({(e.benchmark, e.split) for e in entries}, key=lambda bs: (benchmark_order(bs[0]), bs[1]))
    panels = []
    for benchmark, split in pairs:
        column = summary_column(benchmark, split)
        if column not in summary.columns:
            continue
        bars = [
            Bar(f"{method} · {backbone}", float(value), source)
            for method, backbone, source, value in zip(
                summary["Method"], summary["Backbone"], summary["Source"], summary[column], strict=True
            )
            if value is not None and not math.isnan(float(value))
        ]
        if not bars:
            continue
        bars.sort(key=lambda b: (-b.value, b.label, b.source))
        metric = headline_metric(benchmark) or ""
        panel_title = f"{title(benchmark)} {split}: {metric}"
        panels.append(Panel(benchmark, split, metric, panel_title, is_toy(benchmark), tuple(bars)))
    return sorted(panels, key=lambda p: p.toy)  # stable: keeps the order within each group


def write_chart(entries: Sequence[Entry], path: Path) -> Path:
    """Draw ``chart_panels(entries)`` into a PNG at ``path`` (atomically); returns the path. A bare ``Figure`` (no
    pyplot), so drawing never changes the matplotlib backend of the calling process."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    panels = chart_panels(entries)
    if not panels:
        raise LeaderboardError("nothing to chart: no headline metric (CIRCO mAP@10, CIRR R@1, ...) in any row")
    groups = [(label, [p for p in panels if p.toy == toy]) for label, toy in ((REAL_LABEL, False), (TOY_LABEL, True))]
    groups = [(label, group) for label, group in groups if group]
    heights = [_group_height(group) for _, group in groups]
    ncols = min(COLUMNS, max(len(group) for _, group in groups))
    fig = Figure(figsize=(4.6 * ncols + 1.5, sum(heights) + 0.7), layout="constrained")
    subfigs = fig.subfigures(len(groups), 1, height_ratios=heights, squeeze=False)[:, 0]
    for subfig, (label, group) in zip(subfigs, groups, strict=True):
        _draw_group(subfig, label, group, ncols)
    sources = sorted({b.source for p in panels for b in p.bars}, key=lambda s: s != "run")
    handles = [Patch(color=COLOURS.get(s, "#999999"), label=LEGEND.get(s, s)) for s in sources]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    fig.suptitle("cirbench leaderboard: headline metric per benchmark and split (default protocol)", fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, metadata={"Software": None})
    return atomic_write_bytes(Path(path), buffer.getvalue())


def _group_height(group: list[Panel]) -> float:
    rows = [group[i : i + COLUMNS] for i in range(0, len(group), COLUMNS)]
    return sum(0.9 + 0.26 * max(3, *(len(p.bars) for p in row)) for row in rows) + 0.3


def _draw_group(subfig, label: str, group: list[Panel], ncols: int) -> None:  # type: ignore[no-untyped-def]
    nrows = math.ceil(len(group) / ncols)
    ratios = [max(3, *(len(p.bars) for p in group[r * ncols : (r + 1) * ncols])) + 2 for r in range(nrows)]
    axes = subfig.subplots(nrows, ncols, squeeze=False, gridspec_kw={"height_ratios": ratios})
    subfig.suptitle(label, fontsize=9, x=0.01, ha="left", fontweight="bold")
    for ax in axes.flat[len(group) :]:
        ax.set_visible(False)
    for index, (ax, panel) in enumerate(zip(axes.flat, group, strict=False)):
        slots = ratios[index // ncols] - 2  # bars keep one thickness across a row of panels
        positions = list(range(len(panel.bars)))
        values = [b.value for b in panel.bars]
        ax.barh(positions, values, color=[COLOURS.get(b.source, "#999999") for b in panel.bars], height=0.7)
        for y, value in zip(positions, values, strict=True):
            ax.text(value, y, f" {value:.2f}", va="center", fontsize=7)
        ax.set_yticks(positions, [b.label for b in panel.bars], fontsize=7)
        ax.set_ylim(slots - 0.5, -0.5)  # the best on top
        ax.set_xlim(0, max(1.0, max(values)) * 1.2)
        ax.set_title(panel.title, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
