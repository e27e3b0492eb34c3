"""``cirbench stats``, ``compare``, ``inspect`` and ``sensitivity``: which differences are real (docs/STATISTICS.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cirbench.commands import app

ResultsOpt = Annotated[Path, typer.Option("--results-dir", help="Folder holding runs/.")]
RootOpt = Annotated[Path | None, typer.Option("--root", help="Data folder (default: the one the run recorded).")]
ResamplesOpt = Annotated[int, typer.Option("--resamples", min=100, help="Bootstrap resamples (and permutations).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the resampling.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.command("stats")
def stats_command(
    run: Annotated[str, typer.Argument(help="Run key (unique prefix) or result file.")],
    results_dir: ResultsOpt = Path("results"),
    root: RootOpt = None,
    resamples: ResamplesOpt = 10_000,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """95 % bootstrap interval of every metric over the run's queries (stratified by part, percentile method)."""
    from cirbench.stats.bootstrap import intervals
    from cirbench.stats.runs import load_run

    scores = load_run(results_dir, run, root)
    found = intervals(scores.scores, scores.metrics, resamples, seed)
    if as_json:
        record = {
            "run_key": scores.result.run_key,
            "n_queries": len(scores.scores.query_ids),
            "resamples": resamples,
            "seed": seed,
            "metrics": {m: {"value": i.value, "low": i.low, "high": i.high} for m, i in found.items()},
        }
        typer.echo(json.dumps(record, indent=2))
        return
    from rich.table import Table

    from cirbench.console import make_console

    table = Table(title=f"{scores.result.label} ({len(scores.scores.query_ids)} queries, {resamples:,} resamples)")
    for column in ("metric", "value", "95 % interval", "±"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    for metric in _ordered(found, scores.result.main_metric):
        i = found[metric]
        table.add_row(metric, f"{i.value:.2f}", f"[{i.low:.2f}, {i.high:.2f}]", f"{i.half_width:.2f}")
    make_console().print(table)


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
    as_json: JsonOpt = False,
) -> None:
    """Paired comparison of two runs on the same queries: difference, paired bootstrap interval, sign-flip p-value
    (Holm-adjusted over the metrics)."""
    from cirbench.stats.bootstrap import difference, holm, paired, permutation_p
    from cirbench.stats.runs import comparable, load_run

    a, b = load_run(results_dir, run_a, root), load_run(results_dir, run_b, root)
    comparable(a, b)
    found = paired(a.scores, b.scores, resamples, seed)
    diff = difference(a.scores, b.scores)
    raw = {m: permutation_p(diff, m, resamples, seed) for m in a.metrics}
    adjusted = holm(raw)
    rows = {
        m: {
            "a": a.metrics[m],
            "b": b.metrics[m],
            "difference": a.metrics[m] - b.metrics[m],
            "low": found[m].low,
            "high": found[m].high,
            "p": raw[m],
            "p_holm": adjusted[m],
        }
        for m in _ordered(a.metrics, a.result.main_metric)
    }
    if as_json:
        typer.echo(json.dumps({"a": a.result.run_key, "b": b.result.run_key, "metrics": rows}, indent=2))
        return
    from rich.table import Table

    from cirbench.console import make_console

    table = Table(title=f"A {a.result.label} ({a.result.run_key[:8]}) vs B ({b.result.run_key[:8]})")
    for column in ("metric", "A", "B", "A - B", "95 % paired interval", "p", "p (Holm)"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for m, r in rows.items():
        table.add_row(
            m,
            f"{r['a']:.2f}",
            f"{r['b']:.2f}",
            f"{r['difference']:+.2f}",
            f"[{r['low']:+.2f}, {r['high']:+.2f}]",
            f"{r['p']:.4f}",
            f"{r['p_holm']:.4f}",
        )
    make_console().print(table)


@app.command("inspect")
def inspect_command(
    run: Annotated[str, typer.Argument(help="Run key (unique prefix) or result file.")],
    results_dir: ResultsOpt = Path("results"),
    root: RootOpt = None,
    metric: Annotated[str | None, typer.Option(help="Per-query metric (default: the main metric).")] = None,
    rows: Annotated[int, typer.Option(min=0, help="Rows to print.")] = 15,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write the whole table as CSV.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the whole table as JSON.")] = None,
    grid: Annotated[Path | None, typer.Option("--grid", help="PNG of the worst and best queries.")] = None,
) -> None:
    """The run query by query, worst first: reference, text, targets, rank of the first target, the metric."""
    import pandas as pd
    from rich.table import Table

    from cirbench.commands.output_paths import check_outputs
    from cirbench.console import make_console
    from cirbench.io import atomic_write_text
    from cirbench.results import load_rankings
    from cirbench.stats.inspect import per_query_table, write_grid
    from cirbench.stats.runs import load_run

    check_outputs({"--csv": csv, "--json": json_out, "--grid": grid}, {"--grid": ".png"})
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
        write_grid(scores, frame, grid)
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
    device: Annotated[str, typer.Option(help="auto, cpu, cuda ...")] = "auto",
    out: Annotated[Path | None, typer.Option("--out", help="Also write the markdown table here.")] = None,
) -> None:
    """Re-evaluate under each choice papers make differently and tabulate the difference from the default."""
    from cirbench.commands.core import pick_device
    from cirbench.commands.output_paths import check_outputs
    from cirbench.evaluation import EvalSettings, RunRequest
    from cirbench.io import atomic_write_text
    from cirbench.stats.sensitivity import markdown, sensitivity

    check_outputs({"--out": out})  # before the evaluations, not after them
    request = RunRequest(method, benchmark, backbone, split, root, checkpoint)
    settings = EvalSettings(results_dir=results_dir, device=pick_device(device))
    base, found = sensitivity(request, settings, metric, resamples, seed)
    text = markdown(base, found, metric or base.result.main_metric)
    typer.echo(text)
    if out is not None:
        atomic_write_text(out, text)
