"""``cirbench demo``: train LinCIR from text and evaluate every method on the shapes world (no downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cirbench.commands import app
from cirbench.commands.seeds import parse_seeds


@app.command("demo")
def demo_command(
    out: Annotated[
        Path,
        typer.Option(help="The demo's folder: corpus, LinCIR checkpoints, results, leaderboard (git ignores runs/)."),
    ] = Path("runs/demo"),
    results_dir: Annotated[
        Path | None, typer.Option(help="Where result files go (default: OUT/results).", show_default=False)
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="LinCIR training steps.")] = 600,
    batch: Annotated[int, typer.Option(min=1, help="Global batch size.")] = 64,
    corpus_size: Annotated[int, typer.Option(min=1, help="Captions in each seed's grammar corpus.")] = 20_000,
    seeds: Annotated[
        str,
        typer.Option(
            callback=lambda value: value if value is None else (parse_seeds(value) and value),
            help="Comma-separated seeds: one corpus and one phi each; the leaderboard shows mean ± sd.",
        ),
    ] = "0",
    protocol: Annotated[
        list[str] | None,
        typer.Option("--protocol", "-p", help="shapes protocol option KEY=VALUE (repeatable), e.g. renders=1."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch threads (default: the free cores, from the load average).")
    ] = None,
    leaderboard: Annotated[
        Path | None,
        typer.Option(help="Markdown leaderboard to write (default: OUT/LEADERBOARD.md).", show_default=False),
    ] = None,
    chart: Annotated[
        Path | None,
        typer.Option(help="Summary chart (PNG) to write (default: OUT/leaderboard.png).", show_default=False),
    ] = None,
    no_leaderboard: Annotated[
        bool, typer.Option("--no-leaderboard", help="Write neither the leaderboard nor the chart.")
    ] = False,
    reuse_from: Annotated[
        Path | None,
        typer.Option(
            help="A results folder, only read: a result it holds under the same run key is copied in, not computed "
            "(default: the checkout's committed results/, when there is one).",
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Re-evaluate even if results exist.")] = False,
) -> None:
    """Train LinCIR on the shapes grammar and evaluate it with the baselines, all in OUT (runs/demo; 40 s measured
    from a fresh clone on 2 CPU cores, docs/PERFORMANCE.md); a rerun reuses everything."""
    from cirbench.commands.output_paths import check_outputs
    from cirbench.demo import DemoConfig, committed_results, run_demo
    from cirbench.io import ensure_writable
    from cirbench.options import split_pairs

    config = DemoConfig(
        out=out,
        results_dir=results_dir,
        steps=steps,
        global_batch=batch,
        corpus_size=corpus_size,
        seeds=parse_seeds(seeds),
        threads=threads,
        leaderboard=leaderboard,
        chart=chart,
        write_leaderboard=not no_leaderboard,
        overwrite=overwrite,
        shapes_options=split_pairs(protocol, "-p"),
        reuse_from=reuse_from if reuse_from is not None else committed_results(),
    )
    _check_shapes_options(config.shapes_options)
    board = config.board()
    if board is not None:  # a folder or a taken name is found now, not after the training
        check_outputs({"--leaderboard": board[0], "--chart": board[1]}, {"--chart": ".png"})
    folders = [out, config.results()] + ([] if board is None else [board[0].parent, board[1].parent])
    for folder in dict.fromkeys(folders):  # a full or read-only disk is found now, not after the training
        ensure_writable(folder)
    run_demo(config)


def _check_shapes_options(options: dict[str, str]) -> None:
    """A misspelt or out-of-range ``-p`` is refused now, not after the training."""
    from cirbench.evaluation import RunRequest, resolve

    resolve(RunRequest("image-only", "shapes", "shapes-clip:v2", "test", protocol_options=options))
