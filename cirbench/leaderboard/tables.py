"""Leaderboard tables: one per benchmark (its columns, Δ rows against published numbers) and a summary table.

Columns, titles, the headline metric, derived metrics (CIRR's Avg) and section order come from each benchmark's
class; a benchmark this install does not know shows every metric its rows have. Deltas are only shown for the same
method, variant, backbone, benchmark and split under the default protocol. Missing values stay missing (NaN).

A benchmark may declare protocol variants that are never ranked beside its official rows (``separate_protocols``:
CIRR's and FashionIQ's ``protocol=mieb``, scored as MIEB does with other metrics, pool and queries): their rows form
a section of their own, with its own title, columns and notes, and are left out of the official table and the
summary. So do ``--limit`` smoke runs (over a split's first N queries): a section of their own, never ranked.
The summary table is ``summary.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from cirbench.benchmarks.base import ProtocolView
from cirbench.errors import LeaderboardError
from cirbench.leaderboard.entries import Entry, registered

MISSING = "–"
META_COLUMNS = ("Method", "Backbone", "Split", "Protocol", "Training data", "Train time", "Source")
HIDDEN_COLUMNS = ("Citation", "Run key", "Seeds", "±")
PM = " ±"  # suffix of the column holding a metric's spread (sd over seeds) or CI half-width
LOW, HIGH = " 95% low", " 95% high"  # suffixes of the columns holding a run's bootstrap interval (--ci)
ALL_COLUMNS = "all"  # --columns all: every metric the rows have
SUMMARY_META = ("Method", "Backbone", "Train time", "Source", "Citation")
UNREGISTERED_ORDER = 100


def title(benchmark: str) -> str:
    bench = registered(benchmark)
    return bench.display_name if bench is not None else benchmark


def headline_metric(benchmark: str) -> str | None:
    """The summary table's metric of a benchmark: its main metric (None when the benchmark is unknown)."""
    bench = registered(benchmark)
    return bench.main_metric if bench is not None else None


def protocol_views(benchmark: str) -> tuple[ProtocolView, ...]:
    """The protocol variants ``benchmark`` shows in sections of their own (none for an unknown benchmark)."""
    bench = registered(benchmark)
    return bench.separate_protocols if bench is not None else ()


def view_of(entry: Entry) -> ProtocolView | None:
    """The separate section a row belongs to (None: the benchmark's official table)."""
    return next((v for v in protocol_views(entry.benchmark) if v.deviation in entry.protocol), None)


def section_rows(entries: Iterable[Entry], benchmark: str, view: ProtocolView | None = None) -> list[Entry]:
    """``benchmark``'s full-run rows of one section: the official table (``view`` None) or one protocol variant's."""
    return [e for e in entries if e.benchmark == benchmark and e.limit is None and view_of(e) == view]


def smoke_rows(entries: Iterable[Entry], benchmark: str) -> list[Entry]:
    """``benchmark``'s ``--limit`` runs: smoke tests over a split's first N queries, shown apart and never ranked."""
    return [e for e in entries if e.benchmark == benchmark and e.limit is not None]


def views_present(entries: Iterable[Entry], benchmark: str) -> list[ProtocolView]:
    rows = [e for e in entries if e.benchmark == benchmark and e.limit is None]
    return [v for v in protocol_views(benchmark) if any(view_of(e) == v for e in rows)]


def benchmark_columns(benchmark: str, entries: Iterable[Entry]) -> list[str]:
    """The benchmark's official columns, or (none declared, or unknown benchmark) every metric present: overall
    first, then by prefix, K."""
    bench = registered(benchmark)
    if bench is not None and bench.leaderboard_columns is not None:
        return list(bench.leaderboard_columns)
    names = {m for e in entries if e.benchmark == benchmark for m in e.metrics}
    return sorted(names, key=metric_sort_key)


def metric_sort_key(name: str) -> tuple:
    match = re.fullmatch(r"(?:(?P<prefix>.+)_)?(?P<metric>[^_@]+)@(?P<k>\d+)", name)
    if not match:
        return (1, name, "", 0)
    prefix = match["prefix"] or ""
    return (0 if not prefix else 1, prefix, match["metric"].lower() != "map", match["metric"], int(match["k"]))


def entry_values(entry: Entry, columns: Sequence[str]) -> list[float]:
    """The entry's value per column (NaN when absent), with the benchmark's derived metrics filled in."""
    metrics = dict(entry.metrics)
    bench = registered(entry.benchmark)
    if bench is not None:
        metrics.update(bench.derived_metrics(metrics))
    return [float(metrics[c]) if c in metrics else math.nan for c in columns]


def sort_key(entry: Entry) -> tuple:
    return (
        entry.split,
        entry.method,
        entry.variant,
        entry.options,
        entry.backbone,
        entry.protocol,
        0 if entry.source == "reported" else 1,
        entry.group,
        entry.created_at,
        entry.run_key,
        entry.benchmark,
    )


def training_text(entry: Entry) -> str:
    """E.g. "zero-shot: CC3M images": whether a method saw the benchmark matters as much as its data."""
    kind = {True: "zero-shot", False: f"trained on {title(entry.benchmark)}", None: ""}
    head = kind[entry.zero_shot]
    if entry.training_data:
        return f"{head}: {entry.training_data}" if head else str(entry.training_data)
    return head or MISSING


def _matching_reported(run: Entry, reported: Sequence[Entry]) -> Entry | None:
    """The reported row a run is compared with: same method, variant, backbone, benchmark and split, and the run at
    the method's default options (a Slerp run at another alpha is not the published Slerp)."""
    if run.options:
        return None
    same = (run.benchmark, run.split, run.method, run.variant, run.backbone)
    return next((r for r in reported if (r.benchmark, r.split, r.method, r.variant, r.backbone) == same), None)


def spread_kind(entry: Entry) -> str:
    """What a row's ± means: the sample std over seeds, or the half-width of a 95 % bootstrap interval."""
    if entry.seeds:
        return f"sd over {len(entry.seeds)} seeds"
    return "95 % bootstrap interval" if entry.intervals else ""


def _row(entry: Entry, columns: Sequence[str], source: str | None = None) -> dict[str, Any]:
    pm = entry.spread if entry.seeds else entry.half_widths
    bounds = {} if source is not None else entry.intervals
    return {
        "Method": entry.label,
        "Backbone": entry.backbone,
        "Split": entry.split,
        "Protocol": "; ".join(entry.protocol) or "default",
        "Training data": training_text(entry),
        "Train time": entry.train_time or MISSING,
        "Source": source or entry.source,
        "Citation": entry.citation,
        "Run key": entry.run_key,
        "Seeds": ",".join(str(s) for s in entry.seeds),
        "±": spread_kind(entry) if source is None else "",
        **dict(zip(columns, entry_values(entry, columns), strict=True)),
        **{f"{c}{PM}": float(pm[c]) if c in pm and source is None else math.nan for c in columns},
        **{f"{c}{LOW}": float(bounds[c][0]) if c in bounds else math.nan for c in columns},
        **{f"{c}{HIGH}": float(bounds[c][1]) if c in bounds else math.nan for c in columns},
    }


def chosen_columns(
    benchmark: str, entries: Iterable[Entry], wanted: Sequence[str] | None, view: ProtocolView | None = None
) -> list[str]:
    """``wanted`` metric columns (checked against what the benchmark's rows have), or the benchmark's own; a
    protocol variant's section always has its own columns."""
    if view is not None:
        return list(view.columns)
    rows = section_rows(entries, benchmark) or smoke_rows(entries, benchmark)
    if not wanted:
        return benchmark_columns(benchmark, rows)
    official = benchmark_columns(benchmark, rows)
    known = set(official) | {m for e in rows for m in e.metrics}
    if list(wanted) == [ALL_COLUMNS]:  # every metric: the official columns first, then the rest by prefix and K
        return official + sorted(known - set(official), key=metric_sort_key)
    unknown = [c for c in wanted if c not in known]
    if unknown:
        choices = ", ".join(sorted(known, key=metric_sort_key))
        raise LeaderboardError(f"--columns: {', '.join(unknown)} not among {benchmark}'s metrics ({choices})")
    return list(wanted)


def benchmark_table(
    entries: Sequence[Entry],
    benchmark: str,
    wanted: Sequence[str] | None = None,
    view: ProtocolView | None = None,
    smoke: bool = False,
) -> pd.DataFrame:
    """One benchmark's rows of one section (floats, NaN = missing), each run followed by its Δ row when comparable;
    ``smoke``: its ``--limit`` runs instead."""
    rows_in = sorted(smoke_rows(entries, benchmark) if smoke else section_rows(entries, benchmark, view), key=sort_key)
    columns = chosen_columns(benchmark, rows_in, wanted, view)
    reported = [e for e in rows_in if e.source == "reported"]
    rows = []
    for entry in rows_in:
        rows.append(_row(entry, columns))
        rep = _matching_reported(entry, reported) if entry.source == "run" and entry.default_protocol else None
        if rep is not None:
            delta = _row(entry, columns, source="delta")
            delta.update({"Training data": "", "Train time": "", "Citation": rep.citation, "Seeds": ""})
            for col, run_v, rep_v in zip(
                columns, entry_values(entry, columns), entry_values(rep, columns), strict=True
            ):
                delta[col] = run_v - rep_v
            rows.append(delta)
    extra = [f"{c}{suffix}" for suffix in (PM, LOW, HIGH) for c in columns]
    frame = pd.DataFrame(rows, columns=[*META_COLUMNS, *HIDDEN_COLUMNS, *columns, *extra])
    return frame.drop(columns=[c for c in extra if frame[c].isna().all()])


def not_compared(entries: Sequence[Entry], benchmark: str) -> list[str]:
    """Runs whose reported counterpart is on another split or protocol: listed so nobody compares them."""
    reported = [e for e in entries if e.benchmark == benchmark and e.source == "reported"]
    notes = set()
    for run in (e for e in section_rows(entries, benchmark) if e.source == "run"):
        same = [r for r in reported if (r.method, r.variant, r.backbone) == (run.method, run.variant, run.backbone)]
        if not same:
            continue
        if run.options and any(r.split == run.split for r in same):
            notes.add(f"{run.label} · {run.backbone} (run with method options other than the defaults)")
        elif not run.default_protocol and any(r.split == run.split for r in same):
            notes.add(f"{run.label} · {run.backbone} (run on {run.split} with a non-default protocol)")
        elif not any(r.split == run.split for r in same):
            splits = "/".join(sorted({r.split for r in same}))
            notes.add(f"{run.label} · {run.backbone} (run on {run.split}, reported on {splits})")
    return sorted(notes)


def benchmark_order(benchmark: str) -> tuple[int, str]:
    bench = registered(benchmark)
    return (bench.leaderboard_order if bench is not None else UNREGISTERED_ORDER, benchmark)


def benchmarks_in(entries: Iterable[Entry]) -> list[str]:
    """The benchmarks present, in their sections' order (the real benchmarks first, then alphabetically)."""
    return sorted({e.benchmark for e in entries}, key=benchmark_order)


def summary_column(benchmark: str, split: str) -> str:
    return f"{title(benchmark)} {headline_metric(benchmark)} ({split})"
