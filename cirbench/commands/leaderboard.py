"""``cirbench leaderboard`` (tables, CSV, chart) and ``cirbench submit`` (evaluation-server files).

Heavy imports (pandas, matplotlib, the loaders) stay inside the command bodies so ``cirbench --help`` is fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from cirbench.commands import app
from cirbench.errors import LeaderboardError, UsageError, shown

DEFAULT_RESULTS = Path("results")


@app.command()
def leaderboard(
    results_dir: Path = typer.Option(DEFAULT_RESULTS, "--results-dir", help="Folder holding runs/ (result files)."),
    benchmark: str | None = typer.Option(None, "--benchmark", help="Only this benchmark's table."),
    fmt: str = typer.Option("md", "--format", "-f", help="md (markdown) or csv."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
    chart: Path | None = typer.Option(None, "--chart", help="Also write the summary chart (PNG) here."),
    reported: Path | None = typer.Option(
        None, "--reported", help="Published rows (default: <results-dir>/reported.yaml when it exists)."
    ),
    no_reported: bool = typer.Option(False, "--no-reported", help="Runs only, no published rows."),
    ci: bool = typer.Option(
        False,
        "--ci",
        help="Each run's 95 % bootstrap interval (± h, or [lo, hi] when asymmetric), and a paired test of every "
        "adjacent order in each table (Holm-adjusted; untested pairs say why).",
    ),
    resamples: int = typer.Option(10_000, "--resamples", min=100, help="Bootstrap resamples and permutations (--ci)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the resampling (--ci)."),
    cluster: str = typer.Option(
        "auto",
        "--cluster",
        help="auto: resample and sign-flip the benchmark's clusters of dependent queries whole (--ci); none: every "
        "query on its own.",
    ),
    per_seed: bool = typer.Option(
        False, "--per-seed", help="One row per run, instead of mean ± sd over runs that differ only in seed."
    ),
    columns: str | None = typer.Option(
        None,
        "--columns",
        help="Comma-separated metric columns of the benchmark tables, or 'all' for every metric (default: the "
        "benchmark's headline columns).",
    ),
    bare: bool = typer.Option(
        False, "--bare", help="Only the table and its notes (to paste into a README); needs --benchmark."
    ),
) -> None:
    """Leaderboard tables from result files, with published numbers and deltas beside them."""
    from cirbench import leaderboard as lb
    from cirbench.commands.output_paths import check_outputs
    from cirbench.io import atomic_write_text

    fmt = {"markdown": "md"}.get(fmt.lower(), fmt.lower())
    if fmt not in ("md", "csv"):
        raise UsageError(f"--format must be md or csv, not {fmt!r}")
    if no_reported and reported is not None:
        raise UsageError("--reported and --no-reported contradict each other")
    if results_dir.exists() and not results_dir.is_dir():
        raise UsageError(f"--results-dir {results_dir} is a file: give the folder that holds runs/")
    if reported is None and not no_reported:
        default = results_dir / "reported.yaml"
        reported = default if default.is_file() else None
    elif reported is not None and reported.is_dir():
        raise UsageError(f"--reported {reported} is a folder: give the YAML file of published rows (reported.yaml)")
    elif reported is not None and not reported.is_file():
        raise UsageError(f"reported results file not found: {reported}")
    name = benchmark.strip().lower() if benchmark else None
    if bare and name is None:
        raise UsageError("--bare prints one benchmark's table: add --benchmark NAME")
    wanted = _columns(columns)
    check_outputs({"--out": out, "--chart": chart}, {"--chart": ".png"})
    entries = lb.collect_entries(results_dir, reported, aggregate=not per_seed)
    if name is not None:
        entries = [e for e in entries if e.benchmark == name]
    if not entries:
        where = f"benchmark {name!r} " if name else ""
        raise LeaderboardError(
            f"no {where}results under {Path(results_dir) / 'runs'} and no published rows; evaluate first "
            "(`cirbench eval`) or point --results-dir at the folder that holds runs/"
        )
    notes: dict[str, list[str]] = {}
    if ci:
        from cirbench.leaderboard.significance import add_intervals
        from cirbench.stats.compare import use_clusters

        found = add_intervals(entries, results_dir, resamples, seed, cluster=use_clusters(cluster))
        entries, notes = found.entries, found.notes
        for line in found.skipped:
            typer.echo(f"no interval for {line}", err=True)
    if fmt == "csv":
        text = lb.render_csv(entries, name, columns=wanted)
    else:
        text = lb.render_markdown(entries, name, benchmark_notes=notes, columns=wanted, bare=bare)
    if chart is not None:
        lb.write_chart(entries, chart)
    if out is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(out, text)
        typer.echo(f"wrote {out}", err=True)
    if chart is not None:
        typer.echo(f"wrote {chart}", err=True)


def _columns(text: str | None) -> list[str] | None:
    """``--columns R@1,R@5`` -> the names; none at all, or one twice, is refused (not the default table, silently)."""
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise UsageError(f"--columns {shown(text)} names no column: give metric names, e.g. --columns R@1,R@5")
    twice = sorted({c for c in names if names.count(c) > 1})
    if twice:
        raise UsageError(f"--columns {shown(text)} names {', '.join(twice)} twice: give each column once")
    return names


@app.command()
def submit(
    benchmark: str = typer.Option(..., "--benchmark", help="A benchmark with a server format (cirr, circo)."),
    run: str = typer.Option(..., "--run", help="Run key (unique prefix) or path to a result file."),
    results_dir: Path = typer.Option(DEFAULT_RESULTS, "--results-dir", help="Folder holding runs/."),
    out_dir: Path = typer.Option(Path("submissions"), "--out-dir", help="Where the server files go."),
    root: Path | None = typer.Option(
        None,
        "--root",
        help="Benchmark annotations (dataset root) to validate ids against; FashionIQ needs it.",
    ),
) -> None:
    """Evaluation-server files from a run's stored rankings, validated before writing."""
    from cirbench.results import find_result
    from cirbench.submission import submit as make_submission

    paths, notes = make_submission(find_result(results_dir, run), benchmark, out_dir, root)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    for path in paths:
        typer.echo(f"wrote {path} ({path.stat().st_size:,} bytes)")
