"""``cirbench demo``: train LinCIR from text and evaluate every method on the shapes world (no downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cirbench.commands import app


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option(help="Run folder (corpus, LinCIR checkpoints).")] = Path("runs/demo"),
    results_dir: Annotated[Path, typer.Option(help="Where result files go.")] = Path("results"),
    steps: Annotated[int, typer.Option(help="LinCIR training steps.")] = 600,
    batch: Annotated[int, typer.Option(help="Global batch size.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the corpus and of training.")] = 0,
    leaderboard: Annotated[Path, typer.Option(help="Markdown leaderboard to write.")] = Path("results/LEADERBOARD.md"),
    chart: Annotated[Path, typer.Option(help="Summary chart (PNG) to write.")] = Path("results/leaderboard.png"),
    no_leaderboard: Annotated[
        bool, typer.Option("--no-leaderboard", help="Write neither the leaderboard nor the chart.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Re-evaluate even if results exist.")] = False,
) -> None:
    """Train LinCIR on the shapes grammar and evaluate it with the baselines: a few minutes on 2 CPU cores."""
    from cirbench.demo import DemoConfig, run_demo

    run_demo(
        DemoConfig(
            out=out,
            results_dir=results_dir,
            steps=steps,
            global_batch=batch,
            seed=seed,
            leaderboard=None if no_leaderboard else leaderboard,
            chart=None if no_leaderboard else chart,
            overwrite=overwrite,
        )
    )
