"""Result files (+ published numbers) -> per-benchmark tables, a summary table, markdown, CSV and a chart.

Every row says what produced it (``run`` with its run key, or ``reported`` with its citation), on which split
and under which protocol, so a val run is never silently ranked against a published test number: deltas are
only shown for the same method, variant, backbone, benchmark and split under the default protocol, and the
best value of a column is marked per split. Missing metrics stay missing ("–"), they are never filled in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

MISSING = "–"
DECIMALS = 2

# Official column lists (BENCHMARKS.md §1.3, §2.3, §3.3, §4.3); any other benchmark shows every metric it has.
OFFICIAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "circo": ("mAP@5", "mAP@10", "mAP@25", "mAP@50"),
    "cirr": ("R@1", "R@5", "R@10", "R@50", "Rsubset@1", "Rsubset@2", "Rsubset@3", "Avg"),
    "fashioniq": (
        "dress_R@10",
        "dress_R@50",
        "shirt_R@10",
        "shirt_R@50",
        "toptee_R@10",
        "toptee_R@50",
        "avg_R@10",
        "avg_R@50",
    ),
    "genecis": tuple(
        f"{t}_R@{k}"
        for t in ("focus_attribute", "change_attribute", "focus_object", "change_object")
        for k in (1, 2, 3)
    )
    + ("avg_R@1",),
}
TITLES = {
    "circo": "CIRCO",
    "cirr": "CIRR",
    "fashioniq": "FashionIQ",
    "genecis": "GeneCIS",
    "shapes": "shapes",
}
BENCHMARK_ORDER = ("circo", "cirr", "fashioniq", "genecis")
# Summary: one headline metric per benchmark (shapes only when someone ran it).
SUMMARY_METRICS: tuple[tuple[str, str], ...] = (
    ("circo", "mAP@10"),
    ("cirr", "R@1"),
    ("fashioniq", "avg_R@10"),
    ("genecis", "avg_R@1"),
    ("shapes", "mAP@10"),
)
# Where published numbers come from when reported.yaml does not say (see its header).
DEFAULT_REPORTED_SPLITS = {"circo": "test", "cirr": "test", "fashioniq": "val", "genecis": "test"}
# Protocol entries that are locations, not choices: never shown as deviations.
PATH_OPTIONS = frozenset({"image_info", "coco_root", "vg_root", "root", "images_root"})
META_COLUMNS = ("Method", "Backbone", "Split", "Protocol", "Training data", "Train time", "Source")
HIDDEN_COLUMNS = ("Citation", "Run key")
DELTA_NOTE = (
    "Δ rows = run − reported, shown only where a run and a reported row share method, variant, backbone, "
    "benchmark and split and the run uses the default protocol. Published CIRR and CIRCO numbers are on the "
    "test split (evaluation server), FashionIQ on val, GeneCIS on its only split: a val run is not compared "
    "with a test number."
)


class LeaderboardError(ValueError):
    """Nothing to show, or an unreadable reported file; the CLI prints it as one line."""


@dataclass(frozen=True)
class Entry:
    """One benchmark row: a run's result file or one benchmark block of a reported row."""

    benchmark: str
    split: str
    method: str
    backbone: str
    metrics: Mapping[str, float]
    source: str  # "run" or "reported"
    variant: str = ""
    citation: str = ""
    protocol: tuple[str, ...] = ()  # deviations from the benchmark defaults, "key=value"
    training_data: str | None = None
    zero_shot: bool | None = None
    train_time: str | None = None
    run_key: str = ""
    created_at: str = ""
    group: str = field(default="", compare=False)  # reported.yaml row id: one summary row per reported row

    @property
    def label(self) -> str:
        return f"{self.method} ({self.variant})" if self.variant else self.method

    @property
    def default_protocol(self) -> bool:
        return not self.protocol


# --------------------------------------------------------------------------------------------- loading


def format_duration(seconds: float) -> str:
    """Seconds -> "42 s", "3.1 min", "2.5 h" (what a paper's training-time column says)."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_train_time(seconds: float | None, device: str | None, count: int | None) -> str | None:
    """ "3.1 min, 1× cpu": a training time means little without the device type and count beside it."""
    if seconds is None:
        return None
    text = format_duration(float(seconds))
    if device:
        device = re.sub(r"^NVIDIA\s+", "", str(device))
        text += f", {int(count or 1)}× {device}"
    return text


_REPORTED_TIME = re.compile(
    r"(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>min|minutes?|h|hours?|s|sec|seconds?)\b"
    r"(?:.*?\bon\s+(?P<count>\d+)\s*[x×]\s*(?P<device>[A-Za-z0-9][\w-]*))?",
    re.IGNORECASE,
)


def parse_reported_time(text: str | None) -> str | None:
    """ "48 min on 8x A100 (README)" -> "48 min, 8× A100"; None when the text gives no time."""
    match = _REPORTED_TIME.search(text or "")
    if not match:
        return None
    unit = match["unit"].lower()
    unit = "min" if unit.startswith("min") else "h" if unit.startswith("h") else "s"
    out = f"{match['num']} {unit}"
    if match["count"]:
        out += f", {int(match['count'])}× {match['device']}"
    return out


def _value_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def protocol_deviations(benchmark: str, protocol: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Options whose value differs from the benchmark's defaults, as "key=value" (paths ignored)."""
    defaults = benchmark_defaults(benchmark)
    out = []
    for key in sorted(defaults):
        if key in PATH_OPTIONS or protocol is None or key not in protocol:
            continue
        if _value_text(protocol[key]) != _value_text(defaults[key]):
            out.append(f"{key}={_value_text(protocol[key])}")
    return tuple(out)


def benchmark_defaults(benchmark: str) -> dict[str, Any]:
    """The registered benchmark's default options; {} for a benchmark this install does not know."""
    try:
        from cirbench.benchmarks import get_benchmark

        return dict(get_benchmark(benchmark).default_options())
    except Exception:  # noqa: BLE001 - an unknown or broken plugin benchmark still renders, without deviations
        return {}


def entry_from_result(result: Mapping[str, Any]) -> Entry:
    """A result file (``evaluate.result_record`` schema) -> one run row."""
    method, bench = result.get("method") or {}, result.get("benchmark") or {}
    timing, skipped = result.get("timing") or {}, result.get("skipped") or {}
    protocol = protocol_deviations(bench["name"], bench.get("protocol"))
    dropped = int(skipped.get("queries_dropped") or 0)
    if dropped:
        protocol += (f"skipped {dropped} queries",)
    missing = int(skipped.get("images_missing") or 0)
    if missing and not dropped:
        protocol += (f"{missing} images missing",)
    return Entry(
        benchmark=bench["name"],
        split=bench["split"],
        method=method.get("name", "?"),
        variant=method.get("variant") or "",
        backbone=(result.get("backbone") or {}).get("id", "?"),
        metrics={k: float(v) for k, v in (result.get("metrics") or {}).items() if v is not None},
        source="run",
        protocol=protocol,
        training_data=method.get("training_data"),
        zero_shot=method.get("zero_shot"),
        train_time=format_train_time(
            timing.get("train_s"), timing.get("train_device"), timing.get("train_device_count")
        ),
        run_key=str(result.get("run_key", "")),
        created_at=str(result.get("created_at", "")),
    )


def _row_citation(row: Mapping[str, Any], benchmark: str) -> str:
    """The row's source, or a per-benchmark override such as ``genecis_source`` / ``circo_genecis_source``."""
    for key, value in row.items():
        if key.endswith("_source") and benchmark in key[: -len("_source")].split("_"):
            return str(value)
    return str(row.get("source", ""))


def load_reported(path: Path) -> list[Entry]:
    """``results/reported.yaml`` (or the bare list of ``published_results.yaml``) -> reported rows.

    Any mapping of numbers under a row is a benchmark block, so a new benchmark needs no code change.
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise LeaderboardError(f"cannot read reported results {path}: {e}") from e
    if isinstance(data, list):
        data = {"rows": data}
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise LeaderboardError(f"{path}: expected a list of rows or a mapping with a 'rows' list")
    splits = {**DEFAULT_REPORTED_SPLITS, **(data.get("default_splits") or {})}
    zero_shot_default = data.get("zero_shot")
    entries = []
    for index, row in enumerate(data["rows"]):
        if not isinstance(row, dict) or "method" not in row or "backbone" not in row:
            raise LeaderboardError(f"{path}: row {index} needs at least 'method' and 'backbone'")
        row_split = row.get("split")
        time_note = row.get("train_time")
        for bench, metrics in row.items():
            if bench == "split" or not _is_metric_block(metrics):
                continue
            split = row_split.get(bench) if isinstance(row_split, dict) else row_split
            citation = _row_citation(row, bench)
            if time_note and parse_reported_time(time_note):
                citation += f"; train time: {time_note}"
            entries.append(
                Entry(
                    benchmark=bench,
                    split=str(split or splits.get(bench, "test")),
                    method=str(row["method"]),
                    variant=str(row.get("variant") or ""),
                    backbone=str(row["backbone"]),
                    metrics={k: float(v) for k, v in metrics.items() if v is not None},
                    source="reported",
                    citation=citation,
                    training_data=row.get("training_data"),
                    zero_shot=row.get("zero_shot", zero_shot_default),
                    train_time=parse_reported_time(time_note),
                    group=f"reported-{index:03d}",
                )
            )
    return entries


def _is_metric_block(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values())
    )


def collect_entries(results_dir: Path | None, reported: Path | None) -> list[Entry]:
    """Every run under ``results_dir/runs`` plus the reported rows (either may be None)."""
    from cirbench.results import iter_results

    results = iter_results(results_dir) if results_dir is not None else []
    # Test-split runs without public labels have no metrics: they feed `cirbench submit`, not the tables.
    entries = [entry_from_result(r) for r in results if r.get("metrics")]
    if reported is not None:
        entries += load_reported(reported)
    return entries


# --------------------------------------------------------------------------------------------- tables


def benchmark_columns(benchmark: str, entries: Iterable[Entry]) -> list[str]:
    """The official columns, or (unknown benchmark) every metric present: overall first, then by prefix, K."""
    if benchmark in OFFICIAL_COLUMNS:
        return list(OFFICIAL_COLUMNS[benchmark])
    names = {m for e in entries if e.benchmark == benchmark for m in e.metrics}
    return sorted(names, key=_metric_sort_key)


def _metric_sort_key(name: str) -> tuple:
    match = re.fullmatch(r"(?:(?P<prefix>.+)_)?(?P<metric>[^_@]+)@(?P<k>\d+)", name)
    if not match:
        return (1, name, "", 0)
    prefix = match["prefix"] or ""
    return (
        0 if not prefix else 1,
        prefix,
        match["metric"].lower() != "map",
        match["metric"],
        int(match["k"]),
    )


def entry_values(entry: Entry, columns: Sequence[str]) -> list[float]:
    """The entry's value per column (NaN when absent); CIRR's Avg = (R@5 + Rsubset@1) / 2 when both exist."""
    metrics = dict(entry.metrics)
    if entry.benchmark == "cirr" and "Avg" not in metrics and {"R@5", "Rsubset@1"} <= metrics.keys():
        metrics["Avg"] = (metrics["R@5"] + metrics["Rsubset@1"]) / 2
    return [float(metrics[c]) if c in metrics else math.nan for c in columns]


def _sort_key(entry: Entry) -> tuple:
    return (
        entry.split,
        entry.method,
        entry.variant,
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
    kind = {True: "zero-shot", False: f"trained on {TITLES.get(entry.benchmark, entry.benchmark)}", None: ""}
    head = kind[entry.zero_shot]
    if entry.training_data:
        return f"{head}: {entry.training_data}" if head else str(entry.training_data)
    return head or MISSING


def _matching_reported(run: Entry, reported: Sequence[Entry]) -> Entry | None:
    for rep in reported:
        if (rep.benchmark, rep.split, rep.method, rep.variant, rep.backbone) == (
            run.benchmark,
            run.split,
            run.method,
            run.variant,
            run.backbone,
        ):
            return rep
    return None


def _row(entry: Entry, columns: Sequence[str], source: str | None = None) -> dict[str, Any]:
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
        **dict(zip(columns, entry_values(entry, columns), strict=True)),
    }


def benchmark_table(entries: Sequence[Entry], benchmark: str) -> pd.DataFrame:
    """One benchmark's rows (floats, NaN = missing), each run followed by its Δ row when comparable."""
    rows_in = sorted((e for e in entries if e.benchmark == benchmark), key=_sort_key)
    columns = benchmark_columns(benchmark, rows_in)
    reported = [e for e in rows_in if e.source == "reported"]
    rows = []
    for entry in rows_in:
        rows.append(_row(entry, columns))
        rep = _matching_reported(entry, reported) if entry.source == "run" and entry.default_protocol else None
        if rep is not None:
            delta = _row(entry, columns, source="delta")
            delta.update({"Training data": "", "Train time": "", "Citation": rep.citation})
            for col, run_v, rep_v in zip(
                columns, entry_values(entry, columns), entry_values(rep, columns), strict=True
            ):
                delta[col] = run_v - rep_v
            rows.append(delta)
    return pd.DataFrame(rows, columns=[*META_COLUMNS, *HIDDEN_COLUMNS, *columns])


def not_compared(entries: Sequence[Entry], benchmark: str) -> list[str]:
    """Runs whose reported counterpart is on another split or protocol: listed so nobody compares them."""
    reported = [e for e in entries if e.benchmark == benchmark and e.source == "reported"]
    notes = set()
    for run in (e for e in entries if e.benchmark == benchmark and e.source == "run"):
        same = [r for r in reported if (r.method, r.variant, r.backbone) == (run.method, run.variant, run.backbone)]
        if not same:
            continue
        if not run.default_protocol and any(r.split == run.split for r in same):
            notes.add(f"{run.label} · {run.backbone} (run on {run.split} with a non-default protocol)")
        elif not any(r.split == run.split for r in same):
            splits = "/".join(sorted({r.split for r in same}))
            notes.add(f"{run.label} · {run.backbone} (run on {run.split}, reported on {splits})")
    return sorted(notes)


def summary_table(entries: Sequence[Entry]) -> pd.DataFrame:
    """Headline metric per benchmark and split (columns only where data exists); one row per run identity
    (method, variant, backbone; latest default-protocol run per cell) and per reported row."""
    groups: dict[tuple, dict[str, Any]] = {}
    latest: dict[tuple, str] = {}
    headline = dict(SUMMARY_METRICS)
    present: set[tuple[str, str]] = set()
    for entry in sorted(entries, key=_sort_key):
        metric = headline.get(entry.benchmark)
        if metric is None or metric not in entry.metrics or not entry.default_protocol:
            continue
        key = (entry.source != "run", entry.method, entry.variant, entry.backbone, entry.group)
        row = groups.setdefault(
            key,
            {
                "Method": entry.label,
                "Backbone": entry.backbone,
                "Train time": MISSING,
                "Source": entry.source,
                "Citation": "",
            },
        )
        column = (entry.benchmark, entry.split)
        stamp = f"{entry.created_at}|{entry.run_key}"
        if entry.source == "run" and latest.get((*key, column), "") > stamp:
            continue
        latest[(*key, column)] = stamp
        present.add(column)
        row[summary_column(*column)] = entry.metrics[metric]
        if entry.train_time and row["Train time"] == MISSING:
            row["Train time"] = entry.train_time
        if entry.source == "reported" and entry.citation not in row["Citation"].split(" | "):
            row["Citation"] = " | ".join(c for c in (row["Citation"], entry.citation) if c)
    order = [b for b, _ in SUMMARY_METRICS]
    columns = [summary_column(b, s) for b, s in sorted(present, key=lambda bs: (order.index(bs[0]), bs[1]))]
    rows = [groups[k] for k in sorted(groups)]
    return pd.DataFrame(rows, columns=["Method", "Backbone", "Train time", "Source", "Citation", *columns])


def summary_column(benchmark: str, split: str) -> str:
    return f"{TITLES.get(benchmark, benchmark)} {dict(SUMMARY_METRICS)[benchmark]} ({split})"


def benchmarks_in(entries: Iterable[Entry]) -> list[str]:
    """The four real benchmarks in their usual order, then any other benchmark alphabetically."""
    names = {e.benchmark for e in entries}
    return [b for b in BENCHMARK_ORDER if b in names] + sorted(names - set(BENCHMARK_ORDER))


# --------------------------------------------------------------------------------------------- rendering


def best_mask(df: pd.DataFrame, columns: Sequence[str], group: str | None = "Split") -> pd.DataFrame:
    """True where a value (at two decimals) is the best of its column among non-Δ rows of the same split."""
    mask = pd.DataFrame(False, index=df.index, columns=list(columns))
    scored = df[df["Source"] != "delta"] if "Source" in df else df
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


def markdown_table(df: pd.DataFrame, value_columns: Sequence[str], group: str | None = "Split") -> tuple[str, list]:
    """(markdown, footnotes): two decimals, "–" for missing, best per column (and split) in bold."""
    notes = _Footnotes()
    best = best_mask(df, value_columns, group)
    shown = [c for c in df.columns if c not in HIDDEN_COLUMNS]
    out = pd.DataFrame(index=df.index, columns=shown, dtype=object)
    for idx, row in df.iterrows():
        kind = row["Source"]
        for col in shown:
            if col in value_columns:
                text = _fmt(row[col], delta=kind == "delta")
                out.at[idx, col] = f"**{text}**" if best.at[idx, col] else text
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
    if kind == "run":
        return f"run `{row['Run key'][:8]}`" if row.get("Run key") else "run"
    if kind == "delta":
        return f"Δ run − reported {notes.ref(cite)}" if cite else "Δ run − reported"
    if kind == "reported":
        refs = " ".join(notes.ref(c) for c in str(cite).split(" | ") if c)
        return f"reported {refs}".strip()
    return str(kind)


def render_markdown(entries: Sequence[Entry], benchmark: str | None = None, n_runs: int | None = None) -> str:
    """The whole leaderboard (summary + one section per benchmark), or one benchmark's section."""
    names = [benchmark] if benchmark else benchmarks_in(entries)
    if not names or not any(e.benchmark in names for e in entries):
        what = f"benchmark {benchmark!r}" if benchmark else "any benchmark"
        raise LeaderboardError(f"no results or reported rows for {what}")
    runs = sum(e.source == "run" for e in entries) if n_runs is None else n_runs
    reported = len({e.group for e in entries if e.source == "reported"})
    parts = [
        "# cirbench leaderboard",
        "",
        f"Generated by `cirbench leaderboard` from {runs} run result(s) and {reported} reported row(s). "
        "Values are percentages with two decimals; **bold** marks the best value of a column among rows "
        f"of the same split; {MISSING} means not measured or not published (never filled in). Protocol "
        "lists the options that differ from the benchmark's defaults.",
    ]
    if benchmark is None:
        summary = summary_table(entries)
        value_cols = [c for c in summary.columns if c not in ("Method", "Backbone", "Train time", "Source", "Citation")]
        table, notes = markdown_table(summary, value_cols, group=None)
        parts += [
            "",
            "## Summary",
            "",
            "Headline metric per benchmark, one column per split (test and val numbers are not comparable). "
            "Runs: latest default-protocol run per method, variant and backbone.",
            "",
            table,
            *(["", *notes] if notes else []),
        ]
    for name in names:
        df = benchmark_table(entries, name)
        columns = benchmark_columns(name, [e for e in entries if e.benchmark == name])
        table, notes = markdown_table(df, columns)
        parts += ["", f"## {TITLES.get(name, name)}", "", table]
        kinds = {e.source for e in entries if e.benchmark == name}
        extra = [DELTA_NOTE] if {"run", "reported"} <= kinds else []
        skipped = not_compared(entries, name)
        if skipped:
            extra.append(f"Not compared (different split or protocol): {'; '.join(skipped)}.")
        if name == "cirr":
            extra.insert(0, "Avg = (R@5 + Rsubset@1) / 2 (CLIP4Cir convention).")
        parts += ["", *notes] if notes else []
        for line in extra:
            parts += ["", line]
    return "\n".join(parts).rstrip() + "\n"


def csv_frame(entries: Sequence[Entry], benchmark: str | None = None) -> pd.DataFrame:
    """All benchmark tables stacked (Benchmark column first), numbers at two decimals, missing = empty."""
    names = [benchmark] if benchmark else benchmarks_in(entries)
    frames = []
    for name in names:
        df = benchmark_table(entries, name)
        if len(df):
            df.insert(0, "Benchmark", name)
            frames.append(df)
    if not frames:
        what = f"benchmark {benchmark!r}" if benchmark else "any benchmark"
        raise LeaderboardError(f"no results or reported rows for {what}")
    out = pd.concat(frames, ignore_index=True)
    numeric = out.select_dtypes("number").columns
    out[numeric] = out[numeric].round(DECIMALS)
    return out


def render_csv(entries: Sequence[Entry], benchmark: str | None = None) -> str:
    return csv_frame(entries, benchmark).to_csv(index=False, float_format=f"%.{DECIMALS}f", lineterminator="\n")


def write_chart(entries: Sequence[Entry], path: Path) -> Path:
    """A PNG of the summary table: one panel per headline column, runs and reported rows in two colours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cirbench.io import atomic_write_bytes

    summary = summary_table(entries)
    value_cols = [c for c in summary.columns if c not in ("Method", "Backbone", "Train time", "Source", "Citation")]
    if not value_cols:
        raise LeaderboardError("nothing to chart: no headline metric (CIRCO mAP@10, CIRR R@1, ...) in any row")
    labels = [
        f"{m} · {b}" + (" (reported)" if s == "reported" else "")
        for m, b, s in zip(summary["Method"], summary["Backbone"], summary["Source"], strict=True)
    ]
    ncols = min(3, len(value_cols))
    nrows = math.ceil(len(value_cols) / ncols)
    panel_h = max(1.8, 0.3 * len(summary) + 0.8)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.2 * ncols + 2.5, panel_h * nrows + 0.6), sharey=True, squeeze=False
    )
    colors = ["#4C72B0" if s == "run" else "#BBBBBB" for s in summary["Source"]]
    positions = list(range(len(summary)))
    for ax in axes.flat[len(value_cols) :]:
        ax.set_visible(False)
    for ax, col in zip(axes.flat, value_cols, strict=False):
        values = summary[col].astype(float)
        ax.barh(positions, values.fillna(0).tolist(), color=colors)
        for y, v in zip(positions, values, strict=True):
            ax.text(
                0 if math.isnan(v) else v,
                y,
                f" {MISSING}" if math.isnan(v) else f" {v:.2f}",
                va="center",
                fontsize=7,
            )
        ax.set_title(col, fontsize=9)
        top = float(values.max()) if values.notna().any() else 1.0
        ax.set_xlim(0, max(1.0, top) * 1.25)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_yticks(positions, labels, fontsize=7)
    axes[0][0].invert_yaxis()
    fig.suptitle("cirbench leaderboard (grey: reported, blue: runs)", fontsize=10)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)
