"""``cirbench demo``: train LinCIR from text and evaluate every method on the shapes world (no downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cirbench.commands import app
from cirbench.commands.seeds import parse_seeds


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option(help="Run folder (corpus, LinCIR checkpoints).")] = Path("runs/demo"),
    results_dir: Annotated[Path, typer.Option(help="Where result files go.")] = Path("results"),
    steps: Annotated[int, typer.Option(help="LinCIR training steps.")] = 600,
    batch: Annotated[int, typer.Option(help="Global batch size.")] = 64,
    seeds: Annotated[
        str,
        typer.Option(
            callback=lambda value: value if value is None else (parse_seeds(value) and value),
            help="Comma-separated seeds: one corpus and one phi each; the leaderboard shows mean ± sd.",
        ),
    ] = "0",
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch threads (default: the free cores, from the load average).")
    ] = None,
    leaderboard: Annotated[Path, typer.Option(help="Markdown leaderboard to write.")] = Path("results/LEADERBOARD.md"),
    chart: Annotated[Path, typer.Option(help="Summary chart (PNG) to write.")] = Path("results/leaderboard.png"),
    no_leaderboard: Annotated[
        bool, typer.Option("--no-leaderboard", help="Write neither the leaderboard nor the chart.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Re-evaluate even if results exist.")] = False,
) -> None:
    """Train LinCIR on the shapes grammar and evaluate it with the baselines (87 s measured on 2 busy CPU cores,
    docs/PERFORMANCE.md); a rerun reuses everything."""
    from cirbench.commands.output_paths import check_outputs
    from cirbench.demo import DemoConfig, run_demo
    from cirbench.io import ensure_writable

    if not no_leaderboard:  # a folder or a taken name is found now, not after the training
        check_outputs({"--leaderboard": leaderboard, "--chart": chart}, {"--chart": ".png"})
    folders = [out, results_dir] + ([] if no_leaderboard else [leaderboard.parent, chart.parent])
    for folder in dict.fromkeys(folders):  # a full or read-only disk is found now, not after the training
        ensure_writable(folder)
    run_demo(
        DemoConfig(
            out=out,
            results_dir=results_dir,
            steps=steps,
            global_batch=batch,
            seeds=parse_seeds(seeds),
            threads=threads,
            leaderboard=None if no_leaderboard else leaderboard,
            chart=None if no_leaderboard else chart,
            overwrite=overwrite,
        )
    )
