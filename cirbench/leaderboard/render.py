"""Rendering leaderboards: markdown (best values bold, citations as footnotes) and CSV (the chart: ``chart.py``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from cirbench.errors import LeaderboardError
from cirbench.leaderboard.entries import Entry, registered
from cirbench.leaderboard.summary import summary_choices, summary_table
from cirbench.leaderboard.tables import (
    HIDDEN_COLUMNS,
    HIGH,
    LOW,
    MISSING,
    PM,
    SUMMARY_META,
    benchmark_table,
    benchmarks_in,
    chosen_columns,
    not_compared,
    section_rows,
    smoke_rows,
    title,
    views_present,
)

DECIMALS = 2
DELTA_NOTE = (
    "Δ rows = run − reported, shown only where a run and a reported row share method, variant, backbone, "
    "benchmark and split and the run uses the default protocol. Published CIRR and CIRCO numbers are on the "
    "test split (evaluation server), FashionIQ on val, GeneCIS on its only split: a val run is not compared "
    "with a test number."
)


def best_mask(df: pd.DataFrame, columns: Sequence[str], group: str | None = "Split") -> pd.DataFrame:
    """True where a value (at two decimals) is the best of its column among non-Δ rows of the same split (a smoke
    test's ``--limit`` rows never count)."""
    mask = pd.DataFrame(False, index=df.index, columns=list(columns))
    scored = df[df["Source"] != "delta"] if "Source" in df else df
    if "Protocol" in scored:
        scored = scored[~scored["Protocol"].astype(str).str.contains("(--limit)", regex=False)]
    keys = scored[group] if group and group in scored else pd.Series("", index=scored.index)
    for _, part in scored.groupby(keys, sort=True):
        for col in columns:
            values = part[col].round(DECIMALS)
            if values.notna().any():
                mask.loc[values[values == values.max()].index, col] = True
    return mask


def _fmt(value: float, delta: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if delta:
        rounded = round(float(value), DECIMALS)
        return f"{rounded:+.{DECIMALS}f}" if rounded else f"{0:.{DECIMALS}f}"
    return f"{value:.{DECIMALS}f}"


class _Footnotes:
    """Citations numbered in order of first use: the table stays narrow, every source is still written out."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def ref(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"

    def lines(self) -> list[str]:
        return [f"[{i}] {t}" for i, t in enumerate(self.texts, 1)]


def interval_text(value: float, low: float, high: float, decimals: int = DECIMALS) -> str:
    """`` ± h`` when the interval is symmetric about the value at the printed precision, else `` [lo, hi]``: the
    rule of every surface (``stats.display.is_symmetric``). "2.27 ± 2.05" for [0.45, 4.55] would put the lower end
    at 0.22: that interval is shown as "[0.45, 4.55]"."""
    from cirbench.stats.display import is_symmetric

    if is_symmetric(value, low, high, decimals):
        return f" ± {value - low:.{decimals}f}"
    return f" [{low:.{decimals}f}, {high:.{decimals}f}]"


def _is_number(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def markdown_table(df: pd.DataFrame, value_columns: Sequence[str], group: str | None = "Split") -> tuple[str, list]:
    """(markdown, footnotes): two decimals, "–" for missing, best per column (and split) in bold; a run's 95 %
    interval as ``± h`` or ``[lo, hi]`` (``interval_text``), a seed mean's sd as ``± sd``."""
    notes = _Footnotes()
    best = best_mask(df, value_columns, group)
    hidden = (PM, LOW, HIGH)
    shown = [c for c in df.columns if c not in HIDDEN_COLUMNS and not str(c).endswith(hidden)]
    out = pd.DataFrame(index=df.index, columns=shown, dtype=object)
    for idx, row in df.iterrows():
        kind = row["Source"]
        for col in shown:
            if col in value_columns:
                text = _fmt(row[col], delta=kind == "delta")
                text = f"**{text}**" if best.at[idx, col] else text
                pm, low, high = (row.get(f"{col}{suffix}") for suffix in (PM, LOW, HIGH))
                if _is_number(low) and _is_number(high) and _is_number(row[col]):
                    text += interval_text(float(row[col]), float(low), float(high))
                elif _is_number(pm):
                    text += f" ± {pm:.{DECIMALS}f}"
                out.at[idx, col] = text
            elif col == "Source":
                out.at[idx, col] = _source_text(row, notes)
            else:
                out.at[idx, col] = str(row[col]).replace("|", "\\|")
    align = ["right" if c in value_columns else "left" for c in shown]
    text = out.to_markdown(index=False, colalign=align, disable_numparse=True) if len(out) else ""
    return text, notes.lines()


def _source_text(row: pd.Series, notes: _Footnotes) -> str:
    kind = row["Source"]
    cite = row.get("Citation") or ""
    if kind == "run" and row.get("Seeds"):
        keys = " ".join(f"`{k[:8]}`" for k in str(row["Run key"]).split(","))
        return f"mean ± sd of runs {keys} (seeds {row['Seeds']})"
    if kind == "run":
        return f"run `{row['Run key'][:8]}`" if row.get("Run key") else "run"
    if kind == "delta":
        return f"Δ run − reported {notes.ref(cite)}" if cite else "Δ run − reported"
    if kind == "reported":
        refs = " ".join(notes.ref(c) for c in str(cite).split(" | ") if c)
        return f"reported {refs}".strip()
    return str(kind)


def spread_notes(entries: Sequence[Entry]) -> list[str]:
    """What the ± in a table means, for the kinds of rows it has."""
    out = []
    if any(e.seeds for e in entries):
        out.append(
            "± on a row averaging seeds: the sample standard deviation over its seeds (n - 1; each seed's run is "
            "listed in Source). It measures training noise on these queries, not how the method fares on other data."
        )
    if any(e.intervals for e in entries):
        out.append(
            "± h or [lo, hi] on a run: its 95 % interval over the queries (bootstrap percentile, resampled within each "
            "part the benchmark averages and by whole clusters of dependent queries where it declares them; "
            "Agresti-Coull for a small part or rare hits), written ± h where it is symmetric about the value at two "
            "decimals, else as its ends; a statement about this query sample, not about other datasets "
            "(docs/STATISTICS.md)."
        )
    for entry in entries:
        if entry.replaced:
            left = " ".join(f"`{k[:8]}`" for k in entry.replaced)
            out.append(
                f"{entry.label} · {entry.backbone}: a seed run twice with one recipe counts once, by its latest "
                f"run; left out: {left}."
            )
    return out


SMOKE_NOTE = (
    "Smoke runs (`cirbench eval --limit N`): each scores only the split's first N queries, a pipeline check. Their "
    "numbers are not comparable with full runs or with each other across N; they are never ranked or bolded."
)


def render_markdown(
    entries: Sequence[Entry],
    benchmark: str | None = None,
    n_runs: int | None = None,
    benchmark_notes: Mapping[str, Sequence[str]] | None = None,
    columns: Sequence[str] | None = None,
    bare: bool = False,
) -> str:
    """The whole leaderboard (summary + one section per benchmark), or one benchmark's section; ``benchmark_notes`` are
    extra lines per benchmark (significance), ``columns`` the metric columns, ``bare`` only the tables."""
    names = [benchmark] if benchmark else benchmarks_in(entries)
    if not names or not any(e.benchmark in names for e in entries):
        what = f"benchmark {benchmark!r}" if benchmark else "any benchmark"
        raise LeaderboardError(f"no results or reported rows for {what}")
    benchmark_notes = benchmark_notes or {}
    runs = sum(max(1, len(e.members)) for e in entries if e.source == "run") if n_runs is None else n_runs
    reported = len({e.group for e in entries if e.source == "reported"})
    parts = [
        "# cirbench leaderboard",
        "",
        f"Generated by `cirbench leaderboard` from {runs} run result(s) and {reported} reported row(s). "
        "Values are percentages with two decimals; **bold** marks the best value of a column among rows "
        f"of the same split; {MISSING} means not measured or not published (never filled in). Protocol "
        "lists the options that differ from the benchmark's defaults.",
    ]
    if bare:
        parts = []
    if benchmark is None and not bare:
        summary = summary_table(entries)
        value_cols = [c for c in summary.columns if c not in SUMMARY_META]
        table, notes = markdown_table(summary, value_cols, group=None)
        parts += [
            "",
            "## Summary",
            "",
            "Headline metric per benchmark, one column per split (test and val numbers are not comparable). "
            "Runs: default protocol, full runs only; one row per method, variant, method options (in parentheses "
            "when not the method's defaults), backbone, weights and seed set, so a run at other options or a single "
            "seed is never shown as the default or the seed mean.",
            "",
            table,
            *(["", *notes] if notes else []),
            *[part for line in summary_choices(entries) for part in ("", line)],
        ]
    for name in names:
        rows = section_rows(entries, name)
        if rows:
            shown = chosen_columns(name, rows, columns)
            table, footnotes = markdown_table(benchmark_table(entries, name, shown), shown)
            parts += ([] if bare else ["", f"## {title(name)}"]) + ["", table]
            kinds = {e.source for e in rows}
            extra = [DELTA_NOTE] if {"run", "reported"} <= kinds else []
            skipped = not_compared(entries, name)
            if skipped:
                extra.append(f"Not compared (different split or protocol): {'; '.join(skipped)}.")
            bench = registered(name)
            extra[:0] = list(bench.leaderboard_notes) if bench is not None and not bare else []
            extra += spread_notes(rows) + list(benchmark_notes.get(name, ()))
            parts += ["", *footnotes] if footnotes else []
            for line in extra:
                parts += ["", line]
        for view in views_present(entries, name):  # protocol variants: their own section, never ranked with the above
            table, footnotes = markdown_table(benchmark_table(entries, name, None, view), view.columns)
            parts += ([] if bare else ["", f"## {view.title}"]) + ["", table]
            parts += ["", *footnotes] if footnotes else []
            for line in [*view.notes, *spread_notes(section_rows(entries, name, view))]:
                parts += ["", line]
        smoke = smoke_rows(entries, name)
        if smoke:  # --limit runs: after every ranked section, never beside them
            shown = chosen_columns(name, entries, columns)
            table, footnotes = markdown_table(benchmark_table(entries, name, shown, smoke=True), shown)
            parts += ["", f"## {title(name)}: smoke runs (`--limit`)", "", table]
            parts += ["", *footnotes] if footnotes else []
            for line in [SMOKE_NOTE, *spread_notes(smoke)]:
                parts += ["", line]
    return "\n".join(parts).strip() + "\n"


def csv_frame(
    entries: Sequence[Entry], benchmark: str | None = None, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """All benchmark tables stacked (Benchmark column first), numbers at two decimals, missing = empty (so pandas
    reads numbers as numbers); a metric's ± (sd over seeds or CI half-width, said in "±") in "<metric> ±"."""
    names = [benchmark] if benchmark else benchmarks_in(entries)
    frames = []
    for name in names:
        df = benchmark_table(entries, name, chosen_columns(name, entries, columns) if columns else None)
        if len(df):
            df.insert(0, "Benchmark", name)
            frames.append(df)
        for view in views_present(entries, name):  # a protocol variant: its own rows, marked in "Benchmark"
            df = benchmark_table(entries, name, None, view)
            df.insert(0, "Benchmark", f"{name} [{view.deviation}]")
            frames.append(df)
        if smoke_rows(entries, name):  # --limit smoke runs: their own rows, marked in "Benchmark"
            df = benchmark_table(entries, name, chosen_columns(name, entries, columns) if columns else None, smoke=True)
            df.insert(0, "Benchmark", f"{name} [--limit]")
            frames.append(df)
    if not frames:
        what = f"benchmark {benchmark!r}" if benchmark else "any benchmark"
        raise LeaderboardError(f"no results or reported rows for {what}")
    out = pd.concat(frames, ignore_index=True)
    numeric = out.select_dtypes("number").columns
    out[numeric] = out[numeric].round(DECIMALS)
    text = out.columns.difference(numeric)
    out[text] = out[text].replace(MISSING, "")
    return out


def render_csv(entries: Sequence[Entry], benchmark: str | None = None, columns: Sequence[str] | None = None) -> str:
    frame = csv_frame(entries, benchmark, columns)
    return frame.to_csv(index=False, float_format=f"%.{DECIMALS}f", lineterminator="\n")
