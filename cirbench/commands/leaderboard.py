"""``cirbench leaderboard`` (tables, CSV, chart) and ``cirbench submit`` (evaluation-server files).

Heavy imports (pandas, matplotlib, the loaders) stay inside the command bodies so ``cirbench --help`` is fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from cirbench.commands import app
from cirbench.errors import UsageError

DEFAULT_RESULTS = Path("results")


@app.command()
def leaderboard(
    results_dir: Path = typer.Option(DEFAULT_RESULTS, "--results-dir", help="Folder holding runs/ (result files)."),
    benchmark: str | None = typer.Option(None, "--benchmark", "-b", help="Only this benchmark's table."),
    fmt: str = typer.Option("md", "--format", "-f", help="md (markdown) or csv."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
    chart: Path | None = typer.Option(None, "--chart", help="Also write the summary chart (PNG) here."),
    reported: Path | None = typer.Option(
        None, "--reported", help="Published rows (default: <results-dir>/reported.yaml when it exists)."
    ),
    no_reported: bool = typer.Option(False, "--no-reported", help="Runs only, no published rows."),
) -> None:
    """Leaderboard tables from result files, with published numbers and deltas beside them."""
    from cirbench import leaderboard as lb
    from cirbench.io import atomic_write_text

    fmt = {"markdown": "md"}.get(fmt.lower(), fmt.lower())
    if fmt not in ("md", "csv"):
        raise UsageError(f"--format must be md or csv, not {fmt!r}")
    if no_reported and reported is not None:
        raise UsageError("--reported and --no-reported contradict each other")
    if reported is None and not no_reported:
        default = results_dir / "reported.yaml"
        reported = default if default.is_file() else None
    elif reported is not None and not reported.is_file():
        raise UsageError(f"reported results file not found: {reported}")
    name = benchmark.strip().lower() if benchmark else None
    entries = lb.collect_entries(results_dir, reported)
    if name is not None:
        entries = [e for e in entries if e.benchmark == name]
    text = lb.render_csv(entries, name) if fmt == "csv" else lb.render_markdown(entries, name)
    if chart is not None:
        lb.write_chart(entries, chart)
    if out is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(out, text)
        typer.echo(f"wrote {out}", err=True)
    if chart is not None:
        typer.echo(f"wrote {chart}", err=True)


@app.command()
def submit(
    benchmark: str = typer.Option(..., "--benchmark", "-b", help="A benchmark with a server format (cirr, circo)."),
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
