"""``cirbench demo``: the whole pipeline on the shapes world, on any laptop, with nothing downloaded.

Loads the shipped tiny CLIP (``shapes-clip:v1``), writes a text-only corpus from the caption grammar, trains
LinCIR's phi on it (the paper recipe, scaled down), evaluates LinCIR and the training-free baselines on the
``shapes`` benchmark, and renders the leaderboard. Every step reuses what an earlier run finished (training
resumes, results are reused), so a second ``cirbench demo`` is fast.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from cirbench.results import RunResult

BACKBONE = "shapes-clip:v1"
BASELINES = ("image-only", "text-only", "image+text", "random")
SHOWN = ("mAP@10", "R@1", "descriptive_R@1", "imperative_R@1")


@dataclass
class DemoConfig:
    """Defaults: 600 x 64 phi steps, about 20 s on 2 idle CPU cores (longer training did not help: 2,400 steps
    gave mAP@10 46.9 against 50.4). No model selection: the last phi is evaluated, since selecting on the shapes
    benchmark itself would leak the test set."""

    out: Path = Path("runs/demo")
    results_dir: Path = Path("results")
    steps: int = 600
    global_batch: int = 64
    corpus_size: int = 20_000
    seed: int = 0
    checkpoint_every: int = 200
    leaderboard: Path | None = Path("results/LEADERBOARD.md")
    chart: Path | None = Path("results/leaderboard.png")
    overwrite: bool = False
    progress: bool = True


def train_demo_lincir(config: DemoConfig, console: Console) -> Path:
    """Train (or resume, or reuse) LinCIR's phi on the grammar corpus; returns the run folder."""
    from cirbench.lincir.config import TrainConfig, load_run_config
    from cirbench.lincir.trainer import train
    from cirbench.shapes.captions import write_corpus

    config.out.mkdir(parents=True, exist_ok=True)
    corpus = config.out / f"corpus-{config.corpus_size}-seed{config.seed}.txt"
    if not corpus.is_file():
        write_corpus(corpus, n=config.corpus_size, seed=config.seed)
    run_dir = config.out / "lincir"
    train_config = TrainConfig(
        backbone=BACKBONE,
        corpora=[str(corpus)],
        out=str(run_dir),
        steps=config.steps,
        global_batch=config.global_batch,
        seed=config.seed,
        device="cpu",
        checkpoint_every=config.checkpoint_every,
        val_root=None,  # no model selection (see DemoConfig)
        val_first=None,
        progress=config.progress,
    )
    meta = run_dir / "train_meta.json"
    resume = (run_dir / "state.pt").is_file() or meta.is_file()
    if resume and _demo_recipe_key(load_run_config(run_dir)) != _demo_recipe_key(train_config):
        # The demo's own scratch run, trained with another recipe (an older cirbench or DemoConfig): start again.
        console.print(f"retraining: {run_dir} was trained with another recipe")
        shutil.rmtree(run_dir)
        resume = False
    console.print(f"[bold]1/3[/] training LinCIR phi on {corpus.name} ({config.steps} steps x {config.global_batch})")
    train(train_config, resume=resume, overwrite=not resume)  # the demo's own scratch run
    return run_dir


def _demo_recipe_key(config: Any) -> str:
    """What the demo's phi depends on: the recipe less resumable settings, with corpus paths resolved."""
    from cirbench.lincir.config import recipe_hash

    recipe = config.recipe()
    return recipe_hash({**recipe, "corpora": [str(Path(c).resolve()) for c in recipe.get("corpora") or []]})


def run_demo(config: DemoConfig | None = None) -> list[RunResult]:
    """Train, evaluate every method on ``shapes``, render the leaderboard; returns the results."""
    from cirbench.evaluation import EvalSettings, RunRequest, evaluate, keep_splits, resolve

    config = config or DemoConfig()
    console = Console(stderr=True)
    start = time.perf_counter()
    run_dir = train_demo_lincir(config, console)
    console.print("[bold]2/3[/] evaluating on the shapes benchmark")
    settings = EvalSettings(results_dir=config.results_dir, overwrite=config.overwrite)
    results = []
    with keep_splits():
        for name, checkpoint in (("lincir", run_dir), *((b, None) for b in BASELINES)):
            request = RunRequest(name, "shapes", BACKBONE, "test", checkpoint=checkpoint)
            outcome = evaluate(resolve(request), settings)
            results.append(outcome.result)
            m = {k: outcome.result.metrics.get(k, float("nan")) for k in SHOWN}
            console.print(
                f"  {name:11s} mAP@10 {m['mAP@10']:6.2f}  R@1 {m['R@1']:6.2f}  "
                f"(descriptive {m['descriptive_R@1']:6.2f}, imperative {m['imperative_R@1']:6.2f})"
                f"{'  [reused]' if outcome.reused else ''}",
                highlight=False,
                soft_wrap=True,
            )
    if config.leaderboard is not None:
        console.print(f"[bold]3/3[/] leaderboard -> {config.leaderboard}")
        render_leaderboard(config.results_dir, config.leaderboard, config.chart)
    console.print(f"done in {time.perf_counter() - start:.0f} s")
    return results


def render_leaderboard(results_dir: Path, out: Path, chart: Path | None) -> None:
    """Write the markdown leaderboard (published rows beside ours) and the summary chart."""
    from cirbench import leaderboard as lb
    from cirbench.io import atomic_write_text

    reported = results_dir / "reported.yaml"
    entries = lb.collect_entries(results_dir, reported if reported.is_file() else None)
    atomic_write_text(out, lb.render_markdown(entries))
    if chart is not None:
        lb.write_chart(entries, chart)
