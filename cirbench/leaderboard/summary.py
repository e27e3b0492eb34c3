"""The summary table (and the chart drawn from it): which row stands for a method in each benchmark's column.

One row per reported row, and one per *run identity*: method, variant, the method options that differ from its
defaults (``slerp (alpha=0.6)`` is its own row, never ``slerp``), backbone, the weights beyond the backbone (a
checkpoint, or the checkpoints of a seed mean) and the seeds a row averages. Only default-protocol rows of a
benchmark's official section count (no ``--limit`` smoke run, no protocol variant). Nothing is chosen by recency:
a cell that two runs of one identity could fill (runs of another method version or annotation file) shows the one
made last, and ``summary_choices`` names both and says so under the table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cirbench.leaderboard.row import Entry
from cirbench.leaderboard.tables import (
    MISSING,
    SUMMARY_META,
    benchmark_order,
    headline_metric,
    section_rows,
    sort_key,
    summary_column,
)


def identity(entry: Entry) -> tuple:
    """The summary row an entry belongs to (reported rows: their reported.yaml row)."""
    if entry.source != "run":
        return (1, entry.method, entry.variant, (), entry.backbone, "", (), entry.group)
    return (0, entry.method, entry.variant, entry.options, entry.backbone, entry.model, entry.seeds, "")


@dataclass(frozen=True)
class Choice:
    """A summary cell that several runs of one identity could fill: the run shown and the ones not shown."""

    label: str
    column: str
    shown: Entry
    others: tuple[Entry, ...]

    def note(self) -> str:
        others = ", ".join(f"`{e.run_key[:8]}` ({e.created_at or 'no date'})" for e in self.others)
        return (
            f"{self.label} · {self.shown.backbone}, {self.column}: {len(self.others) + 1} runs of the same method, "
            f"options and weights; shown: `{self.shown.run_key[:8]}` ({self.shown.created_at or 'no date'}), the "
            f"one made last; not shown: {others} (they differ in method version, annotations or protocol version; "
            "see the benchmark's table)."
        )


def summary_rows(entries: Sequence[Entry]) -> tuple[dict[tuple, dict[tuple[str, str], Entry]], list[Choice]]:
    """Per identity, the entry shown in each (benchmark, split) cell, and the cells that had a choice to make."""
    candidates: dict[tuple, dict[tuple[str, str], list[Entry]]] = defaultdict(lambda: defaultdict(list))
    benchmarks = {e.benchmark for e in entries}
    for entry in (e for b in benchmarks for e in section_rows(entries, b)):
        metric = headline_metric(entry.benchmark)
        if metric is None or metric not in entry.metrics or not entry.default_protocol:
            continue
        candidates[identity(entry)][(entry.benchmark, entry.split)].append(entry)
    chosen: dict[tuple, dict[tuple[str, str], Entry]] = {}
    choices = []
    for key, cells in candidates.items():
        chosen[key] = {}
        for cell, found in cells.items():
            found = sorted(found, key=lambda e: (e.created_at, e.run_key))
            chosen[key][cell] = found[-1]
            if len(found) > 1 and key[0] == 0:
                choices.append(Choice(found[-1].label, summary_column(*cell), found[-1], tuple(found[:-1])))
    return chosen, sorted(choices, key=lambda c: (c.label, c.column))


def summary_choices(entries: Sequence[Entry]) -> list[str]:
    """One line per summary cell that several runs of one identity could fill: which is shown, and why."""
    return [c.note() for c in summary_rows(entries)[1]]


def summary_table(entries: Sequence[Entry]) -> pd.DataFrame:
    """Headline metric per benchmark and split (columns only where data exists); one row per run identity and per
    reported row (see the module docstring). The chart draws this table."""
    chosen, _ = summary_rows(entries)
    present: set[tuple[str, str]] = set()
    rows: list[tuple[tuple, dict[str, Any]]] = []
    for key, cells in chosen.items():
        first = min(cells.values(), key=sort_key)
        row: dict[str, Any] = {
            "Method": first.label,
            "Backbone": first.backbone,
            "Train time": MISSING,
            "Source": first.source,
            "Citation": "",
        }
        for cell, entry in sorted(cells.items(), key=lambda kv: (benchmark_order(kv[0][0]), kv[0][1])):
            present.add(cell)
            row[summary_column(*cell)] = entry.metrics[headline_metric(entry.benchmark) or ""]
            if entry.train_time and row["Train time"] == MISSING:
                row["Train time"] = entry.train_time
            if entry.source == "reported" and entry.citation not in row["Citation"].split(" | "):
                row["Citation"] = " | ".join(c for c in (row["Citation"], entry.citation) if c)
        rows.append((key, row))
    columns = [summary_column(b, s) for b, s in sorted(present, key=lambda bs: (benchmark_order(bs[0]), bs[1]))]
    rows.sort(key=lambda kr: kr[0])  # runs first, then reported rows; by method, variant, options, backbone, ...
    return pd.DataFrame([r for _, r in rows], columns=[*SUMMARY_META, *columns])
