"""The leaderboard chart: one panel per (benchmark, split) with that benchmark's headline metric.

Each panel holds only the rows that have a value there, best on top, runs and reported numbers in two colours with a
legend. The synthetic world is drawn apart from the real benchmarks, under its own label: its numbers check the
pipeline and say nothing about how a method does on real data. The rows are the summary table's
(``summary.summary_table``: default protocol only, one row per method, variant, options, backbone, checkpoint and
seed set, never chosen by recency), so the chart never shows a number the summary does not. Panels with at most two
rows are merged into one panel per group (``merge_sparse``). The PNG is deterministic (no timestamp or software
metadata).
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cirbench.errors import LeaderboardError
from cirbench.io import atomic_write_bytes
from cirbench.leaderboard.entries import Entry, registered
from cirbench.leaderboard.summary import summary_table  # which row stands for a method: summary.py
from cirbench.leaderboard.tables import benchmark_order, headline_metric, summary_column, title

COLOURS = {"run": "#4C72B0", "reported": "#B0B0B0"}
LEGEND = {"run": "cirbench run", "reported": "reported (paper / README)"}
TOY_LABEL = "Synthetic world (pipeline check; not comparable with the real benchmarks)"
REAL_LABEL = "Benchmarks"
COLUMNS = 3  # panels per row
SPARSE_ROWS = 2  # a panel with at most this many bars joins its group's merged panel (``merge_sparse``)
MERGED_TITLE = f"Benchmarks with at most {SPARSE_ROWS} rows"
PANEL_MARGIN = 0.45  # inches of a panel beyond its bars: title, x ticks (as drawn, so bars keep one thickness)
SLOT = 0.3  # inches per bar
LABEL_CHAR = 7 * 0.5 / 72  # inches per character of a 7-point row label (DejaVu Sans, on average)


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
    sections: tuple[tuple[str, int], ...] = ()  # a merged panel: (heading, number of bars) per benchmark, in order


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


def merge_sparse(panels: Sequence[Panel]) -> list[Panel]:
    """The panels as drawn: in each group (real benchmarks, synthetic world) the panels with at most
    ``SPARSE_ROWS`` bars become one panel, ``MERGED_TITLE``, placed after the group's other panels, with a heading per
    benchmark above its bars (its own title: benchmark, split, metric). A panel of one or two bars alone in a row of
    ten-bar panels was mostly empty space (GeneCIS). A group of one panel stays as it is; real and synthetic panels
    never merge."""
    drawn: list[Panel] = []
    for toy in (False, True):
        group = [p for p in panels if p.toy == toy]
        sparse = [p for p in group if len(p.bars) <= SPARSE_ROWS]
        if len(group) < 2 or not sparse:
            drawn += group
            continue
        bars = tuple(b for p in sparse for b in p.bars)
        sections = tuple((p.title, len(p.bars)) for p in sparse)
        merged = Panel("", "", "", MERGED_TITLE, toy, bars, sections)
        drawn += [p for p in group if len(p.bars) > SPARSE_ROWS] + [merged]
    return drawn


def write_chart(entries: Sequence[Entry], path: Path) -> Path:
    """Draw ``chart_panels(entries)`` into a PNG at ``path`` (atomically); returns the path. Sparse panels are merged
    (``merge_sparse``); each panel takes the height its bars need (bars keep one thickness across a row, and a short
    panel leaves the rest of its cell blank instead of drawing an empty axis); a title wider than its panel (plot
    and tick labels) is wrapped at words until it fits (``_fit_titles``), and the file is cut to what is drawn
    (``bbox_inches="tight"``), so no title is clipped. A bare ``Figure`` (no pyplot), so drawing never changes the
    matplotlib backend of the calling process. Deterministic (no timestamp or software metadata)."""
    fig = draw_chart(entries)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.1)
    return atomic_write_bytes(Path(path), buffer.getvalue())


def draw_chart(entries: Sequence[Entry]):  # type: ignore[no-untyped-def]
    """The chart's ``Figure`` (with an Agg canvas, laid out and titles fitted), for ``write_chart`` and tests."""
    panels = merge_sparse(chart_panels(entries))
    if not panels:
        raise LeaderboardError("nothing to chart: no headline metric (CIRCO mAP@10, CIRR R@1, ...) in any row")
    return draw_panels(panels)


def draw_panels(panels: Sequence[Panel]):  # type: ignore[no-untyped-def]
    """Draw ``panels`` as they are (real ones first, then the synthetic world under its own label)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    groups = [(label, [p for p in panels if p.toy == toy]) for label, toy in ((REAL_LABEL, False), (TOY_LABEL, True))]
    groups = [(label, group) for label, group in groups if group]
    heights = [_group_height(group) for _, group in groups]
    ncols = min(COLUMNS, max(len(group) for _, group in groups))
    labels = max(len(b.label) for p in panels for b in p.bars) * LABEL_CHAR  # the widest row label, inches
    fig = Figure(figsize=(max(4.6, labels + 1.8) * ncols + 1.5, sum(heights) + 0.7), layout="constrained")
    FigureCanvasAgg(fig)
    subfigs = fig.subfigures(len(groups), 1, height_ratios=heights, squeeze=False)[:, 0]
    axes = []
    for subfig, (label, group) in zip(subfigs, groups, strict=True):
        axes += _draw_group(subfig, label, group, ncols)
    sources = sorted({b.source for p in panels for b in p.bars}, key=lambda s: s != "run")
    handles = [Patch(color=COLOURS.get(s, "#999999"), label=LEGEND.get(s, s)) for s in sources]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    fig.suptitle("cirbench leaderboard: headline metric per benchmark and split (default protocol)", fontsize=10)
    _fit_titles(fig, axes)
    return fig


def _slots(panel: Panel) -> int:
    """Bar positions a panel needs: its bars, plus a heading line per section of a merged panel."""
    return len(panel.bars) + len(panel.sections)


def _height(slots: int) -> float:
    """A panel's height in inches for ``slots`` bar positions (at least three)."""
    return PANEL_MARGIN + SLOT * max(3, slots)


def _group_height(group: list[Panel]) -> float:
    rows = [group[i : i + COLUMNS] for i in range(0, len(group), COLUMNS)]
    return sum(_height(max(_slots(p) for p in row)) for row in rows) + 0.3


def _draw_group(subfig, label: str, group: list[Panel], ncols: int) -> list:  # type: ignore[no-untyped-def]
    nrows = math.ceil(len(group) / ncols)
    slots = [max(3, *(_slots(p) for p in group[r * ncols : (r + 1) * ncols])) for r in range(nrows)]
    grid = subfig.add_gridspec(nrows, ncols, height_ratios=[_height(n) for n in slots])
    subfig.suptitle(label, fontsize=9, x=0.01, ha="left", fontweight="bold")
    axes = []
    for index, panel in enumerate(group):
        row, column = divmod(index, ncols)
        own, cell = max(3, _slots(panel)), grid[row, column]
        if own < slots[row]:  # a shorter panel: the height its bars need, the rest of the cell blank
            ratios = [_height(own), _height(slots[row]) - _height(own)]
            cell = cell.subgridspec(2, 1, height_ratios=ratios, hspace=0)[0]
        ax = subfig.add_subplot(cell)
        _draw_panel(ax, panel, own)
        axes.append(ax)
    return axes


def _draw_panel(ax, panel: Panel, slots: int) -> None:  # type: ignore[no-untyped-def]
    """Bars best first; a merged panel's sections each under a bold heading (no bar on the heading's line)."""
    positions, headings, y = [], [], 0
    for heading, count in panel.sections or (("", len(panel.bars)),):
        if heading:
            headings.append((y, heading))
            y += 1
        positions += range(y, y + count)
        y += count
    values = [b.value for b in panel.bars]
    ax.barh(positions, values, color=[COLOURS.get(b.source, "#999999") for b in panel.bars], height=0.7)
    for position, value in zip(positions, values, strict=True):
        ax.text(value, position, f" {value:.2f}", va="center", fontsize=7)
    ax.set_yticks(positions, [b.label for b in panel.bars], fontsize=7)
    for position, heading in headings:
        ax.text(
            0.005,
            position,
            heading,
            transform=ax.get_yaxis_transform(),
            fontsize=7.5,
            va="center",
            fontweight="bold",
            parse_math=False,
        )
    ax.set_ylim(slots - 0.5, -0.5)  # the best on top
    ax.set_xlim(0, max(1.0, max(values)) * 1.2)
    ax.set_title(panel.title, fontsize=9, parse_math=False)
    ax.tick_params(axis="x", labelsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _fit_titles(fig, axes: list) -> None:  # type: ignore[no-untyped-def]
    """Wrap (at words) each panel title wider than its panel: the plot and its tick labels. Measured after a layout
    pass; a title that cannot wrap further is shrunk. Why: a long name (``MiniDomainNet (FreeDom) test: avg_mAP``)
    over a narrow plot ran into its neighbour or off the figure."""
    for _ in range(3):
        fig.draw_without_rendering()
        renderer = fig.canvas.get_renderer()
        changed = False
        for ax in axes:
            title = ax.title
            left = min(ax.bbox.x0, ax.yaxis.get_tightbbox(renderer).x0)
            room = ax.bbox.x1 - left
            title.set_x(((left + ax.bbox.x1) / 2 - ax.bbox.x0) / ax.bbox.width)  # centred over plot and labels
            width = title.get_window_extent(renderer).width
            if width <= 0.95 * room:
                continue
            lines = title.get_text().split("\n")
            chars = max(8, int(max(len(line) for line in lines) * 0.95 * room / width))
            wrapped = "\n".join(textwrap.wrap(" ".join(lines), chars, break_long_words=False))
            if wrapped != title.get_text():
                title.set_text(wrapped)
            else:
                title.set_fontsize(title.get_fontsize() * 0.9)
            changed = True
        if not changed:
            return
