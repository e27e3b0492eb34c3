"""``cirbench stats``, ``compare``, ``inspect`` and ``sensitivity``: which differences are real (docs/STATISTICS.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cirbench.commands import app
from cirbench.commands.threads_option import ThreadsOpt, use_threads

ResultsOpt = Annotated[Path, typer.Option("--results-dir", help="Folder holding runs/.")]
RootOpt = Annotated[Path | None, typer.Option("--root", help="Data folder (default: the one the run recorded).")]
ResamplesOpt = Annotated[int, typer.Option("--resamples", min=100, help="Bootstrap resamples (and permutations).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the resampling.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ClusterOpt = Annotated[
    str,
    typer.Option(
        "--cluster",
        help="auto: resample and sign-flip the benchmark's clusters of dependent queries whole (CIRR: the image set; "
        "others: a repeated reference image); none: every query on its own (the query-level numbers).",
    ),
]


@app.command("stats")
def stats_command(
    run: Annotated[str, typer.Argument(help="Run key (unique prefix) or result file.")],
    results_dir: ResultsOpt = Path("results"),
    root: RootOpt = None,
    resamples: ResamplesOpt = 10_000,
    seed: SeedOpt = 0,
    cluster: ClusterOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """95 % interval of every metric over the run's queries (stratified by part; clusters resampled whole; percentile
    bootstrap, Agresti-Coull for small parts and rare hits) and its design effect."""
    from cirbench.stats.bootstrap import intervals
    from cirbench.stats.compare import use_clusters
    from cirbench.stats.report import stats_record, stats_table
    from cirbench.stats.runs import load_run

    clustered = use_clusters(cluster)
    scores = load_run(results_dir, run, root)
    found = intervals(scores.scores, scores.metrics, resamples, seed, cluster=clustered)
    if as_json:
        typer.echo(json.dumps(stats_record(scores, found, resamples, seed, clustered), indent=2))
        return
    from cirbench.console import make_console

    order = _ordered(found, scores.result.main_metric)
    make_console().print(stats_table(scores, found, order, resamples, clustered))


def _ordered(metrics, main: str) -> list[str]:
    """The main metric first, then overall metrics before per-part ones, mAP before R, by K."""
    from cirbench.leaderboard.tables import metric_sort_key

    return sorted(metrics, key=lambda m: (m != main, metric_sort_key(m)))


@app.command("compare")
def compare_command(
    run_a: Annotated[str, typer.Argument(help="First run (key or result file).")],
    run_b: Annotated[str, typer.Argument(help="Second run.")],
    results_dir: ResultsOpt = Path("results"),
    root: RootOpt = None,
    resamples: ResamplesOpt = 10_000,
    seed: SeedOpt = 0,
    family: Annotated[
        str,
        typer.Option(
            "--family",
            help="Metrics Holm adjusts together: headline (the benchmark's leaderboard columns) or all. The main "
            "metric's p is the primary result, reported raw.",
        ),
    ] = "headline",
    cluster: ClusterOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Paired comparison of two runs on the same queries: difference, paired bootstrap interval, sign-flip p-value
    (the main metric's raw p is the primary result; Holm within the declared --family)."""
    from cirbench.stats.compare import compare_runs, family_metrics, use_clusters
    from cirbench.stats.report import compare_notes, compare_record, compare_table
    from cirbench.stats.runs import comparable, load_run

    clustered = use_clusters(cluster)
    a, b = load_run(results_dir, run_a, root), load_run(results_dir, run_b, root)
    comparable(a, b)
    family_metrics(a, family)  # an unknown family is refused before the resampling
    found = compare_runs(a, b, resamples, seed, family, clustered)
    order = _ordered(a.metrics, a.result.main_metric)
    if as_json:
        typer.echo(json.dumps(compare_record(found, order, clustered), indent=2))
        return
    from cirbench.console import make_console

    console = make_console()
    console.print(compare_table(found, order, clustered))
    for line in compare_notes(found):
        console.print(line, highlight=False)


@app.command("inspect")
def inspect_command(
    run: Annotated[str, typer.Argument(help="Run key (unique prefix) or result file.")],
    results_dir: ResultsOpt = Path("results"),
    root: RootOpt = None,
    metric: Annotated[str | None, typer.Option(help="Per-query metric (default: the main metric).")] = None,
    rows: Annotated[int, typer.Option(min=0, help="Rows to print.")] = 15,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write the whole table as CSV.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the whole table as JSON.")] = None,
    grid: Annotated[Path | None, typer.Option("--grid", help="Picture of the worst and best queries.")] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="--grid as png or pdf (vector; default: from the file's suffix).")
    ] = None,
    title: Annotated[
        str | None, typer.Option(help="--grid heading (default: benchmark, split, method, backbone).")
    ] = None,
    label: Annotated[str | None, typer.Option(help="--grid's name for the run (default: its key and file).")] = None,
) -> None:
    """The run query by query, worst first: reference, text, targets, rank of the first target, the metric."""
    import pandas as pd
    from rich.table import Table

    from cirbench.commands.output_paths import check_outputs
    from cirbench.console import make_console
    from cirbench.errors import UsageError, shown
    from cirbench.io import atomic_write_text
    from cirbench.results import load_rankings
    from cirbench.stats.inspect import GRID_FORMATS, per_query_table, write_grid
    from cirbench.stats.runs import load_run

    suffix = grid.suffix.lower().lstrip(".") if grid is not None else ""
    fmt = fmt if fmt is not None else (suffix if suffix in GRID_FORMATS else "png")
    if fmt not in GRID_FORMATS:
        raise UsageError(f"--format {shown(fmt)}: the grid is written as {' or '.join(GRID_FORMATS)}; choose one")
    check_outputs({"--csv": csv, "--json": json_out, "--grid": grid}, {"--grid": f".{fmt}"})
    scores = load_run(results_dir, run, root)
    if metric is not None and metric not in scores.scores.values:
        known = ", ".join(scores.scores.values)
        raise typer.BadParameter(f"{metric!r} has no per-query values; choose one of {known}", param_hint="--metric")
    frame = per_query_table(scores, metric)
    if csv is not None:
        atomic_write_text(csv, frame.to_csv(index=False, lineterminator="\n"))
    if json_out is not None:
        atomic_write_text(json_out, frame.to_json(orient="records", indent=1))
    if grid is not None:
        write_grid(scores, frame, grid, fmt=fmt, title=title, label=label)
    table = Table(title=f"{scores.result.label}: worst {min(rows, len(frame))} of {len(frame)} queries")
    for column in frame.columns:
        table.add_column(str(column))
    depth = max((len(v) for v in load_rankings(scores.result)["top"].values()), default=0)
    for record in frame.head(rows).to_dict("records"):
        cells = {k: "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v) for k, v in record.items()}
        if pd.isna(record["first_target_rank"]):
            cells["first_target_rank"] = f"not in top {depth}"
        table.add_row(*cells.values())
    make_console().print(table)
    for path in (csv, json_out, grid):
        if path is not None:
            typer.echo(f"wrote {path}", err=True)


@app.command("sensitivity")
def sensitivity_command(
    method: Annotated[str, typer.Option("--method", "-m", help="Method name.")],
    benchmark: Annotated[str, typer.Option("--benchmark", help="Benchmark name.")],
    backbone: Annotated[str | None, typer.Option("--backbone", "-b", help="Backbone id.")] = None,
    split: Annotated[str | None, typer.Option("--split", help="Split (default: the first).")] = None,
    root: Annotated[Path | None, typer.Option("--root", help="Data folder.")] = None,
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", "-c", help="Method checkpoint.")] = None,
    results_dir: ResultsOpt = Path("results"),
    metric: Annotated[str | None, typer.Option(help="Metric to compare (default: the main metric).")] = None,
    resamples: ResamplesOpt = 10_000,
    seed: SeedOpt = 0,
    cluster: ClusterOpt = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda ...")] = "auto",
    out: Annotated[Path | None, typer.Option("--out", help="Also write the markdown table here.")] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Re-evaluate under each choice papers make differently and tabulate the difference from the default."""
    from cirbench.commands.core import pick_device
    from cirbench.commands.output_paths import check_outputs
    from cirbench.console import make_console
    from cirbench.evaluation import EvalSettings, RunRequest
    from cirbench.io import atomic_write_text
    from cirbench.stats.compare import use_clusters
    from cirbench.stats.report import sensitivity_table
    from cirbench.stats.sensitivity import markdown, sensitivity

    clustered = use_clusters(cluster)
    check_outputs({"--out": out})  # before the evaluations, not after them
    use_threads(threads)  # the one thread rule (cirbench/threads.py), said when the first evaluation starts
    request = RunRequest(method, benchmark, backbone, split, root, checkpoint)
    settings = EvalSettings(results_dir=results_dir, device=pick_device(device))

    def progress(line: str) -> None:
        typer.echo(f"sensitivity: {line}", err=True)

    base, found = sensitivity(request, settings, metric, resamples, seed, clustered, progress)
    chosen = metric or base.result.main_metric
    make_console().print(sensitivity_table(base, found, chosen, clustered))
    if out is not None:
        atomic_write_text(out, markdown(base, found, chosen))
        typer.echo(f"wrote {out}", err=True)
