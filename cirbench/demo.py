"""``cirbench demo``: the whole pipeline on the shapes world, on any laptop, with nothing downloaded.

Loads the shipped tiny CLIP (``shapes-clip:v2``), writes a text-only corpus from the caption grammar, trains
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

from cirbench.console import make_console

if TYPE_CHECKING:
    from cirbench.results import RunResult

BACKBONE = "shapes-clip:v2"
BASELINES = ("image-only", "text-only", "image+text", "random")
TRAINING_FREE = ("slerp", "fusion-sum", "fusion-product")  # at their default alpha / text weight
SHOWN = ("mAP@10", "R@1", "descriptive_R@1", "imperative_R@1")


@dataclass
class DemoConfig:
    """Defaults: 600 x 64 phi steps per seed (longer training did not help: 2,400 steps gave mAP@10 46.9 against
    50.4). No model selection: the last phi is evaluated, since selecting on the shapes benchmark itself would leak
    the test set. Each seed seeds both the corpus and the training, in ``<out>/seed-<s>/``."""

    out: Path = Path("runs/demo")
    results_dir: Path = Path("results")
    steps: int = 600
    global_batch: int = 64
    corpus_size: int = 20_000
    seeds: tuple[int, ...] = (0,)
    threads: int | None = None  # None: the free cores (see choose_threads)
    checkpoint_every: int = 200
    leaderboard: Path | None = Path("results/LEADERBOARD.md")
    chart: Path | None = Path("results/leaderboard.png")
    overwrite: bool = False
    progress: bool = True


def choose_threads(requested: int | None) -> tuple[int, str]:
    """Torch threads for the demo: ``requested``, else the cores this process may use minus the busy ones (1-minute
    load average). On a shared 2-core machine torch's default (every core) ran LinCIR training 3.3x slower than one
    thread (598 against 1,986 samples/s), because contended small ops wait on each other."""
    import os

    if requested is not None:
        return requested, "--threads"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    free = max(1, min(cores, cores - int(load + 0.5)))
    return free, f"{cores} cores, load {load:.1f}"


def seed_dir(config: DemoConfig, seed: int) -> Path:
    """One seed's folder: its corpus (same file name for every seed, so runs group by recipe) and its run."""
    return config.out / f"seed-{seed}"


def train_demo_lincir(config: DemoConfig, seed: int, console: Console, threads: int | None = None) -> Path:
    """Train (or resume, or reuse) LinCIR's phi on the grammar corpus of ``seed``; returns the run folder."""
    import json

    from cirbench.lincir.config import TrainConfig, load_run_config
    from cirbench.lincir.trainer import train
    from cirbench.shapes.captions import write_corpus

    folder = seed_dir(config, seed)
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / f"corpus-{config.corpus_size}.txt"
    if not corpus.is_file():
        write_corpus(corpus, n=config.corpus_size, seed=seed)
    run_dir = folder / "lincir"
    train_config = TrainConfig(
        backbone=BACKBONE,
        corpora=[str(corpus)],
        out=str(run_dir),
        steps=config.steps,
        global_batch=config.global_batch,
        seed=seed,
        device="cpu",
        checkpoint_every=config.checkpoint_every,
        val_root=None,  # no model selection (see DemoConfig)
        val_first=None,
        progress=config.progress,
        threads=threads,
    )
    meta = run_dir / "train_meta.json"
    resume = (run_dir / "state.pt").is_file() or meta.is_file()
    if resume and _demo_recipe_key(load_run_config(run_dir)) != _demo_recipe_key(train_config):
        # The demo's own scratch run, trained with another recipe (an older cirbench or DemoConfig): start again.
        console.print(f"retraining: {run_dir} was trained with another recipe")
        shutil.rmtree(run_dir)
        resume = False
    label = f"seed {seed}: LinCIR phi on {corpus.name} ({config.steps} steps x {config.global_batch})"
    done = json.loads(meta.read_text()) if resume and meta.is_file() else {}
    if done.get("status") == "completed" and done.get("steps") == config.steps:
        console.print(
            f"  {label}: reusing the trained phi in {run_dir} (trained in {done.get('wall_time_s', 0):.0f} s)"
        )
        return run_dir
    console.print(f"  {label}" + (": resuming" if resume else ""))
    train(train_config, resume=resume, overwrite=not resume)  # the demo's own scratch run
    return run_dir


def _demo_recipe_key(config: Any) -> str:
    """What the demo's phi depends on: the recipe less resumable settings, with corpus paths resolved."""
    from cirbench.lincir.config import recipe_hash

    recipe = config.recipe()
    return recipe_hash({**recipe, "corpora": [str(Path(c).resolve()) for c in recipe.get("corpora") or []]})


def run_demo(config: DemoConfig | None = None) -> list[RunResult]:
    """Train one phi per seed, evaluate every method on ``shapes``, render the leaderboard; returns the results."""
    import torch

    from cirbench.evaluation import EvalSettings, RunRequest, evaluate, keep_splits, resolve

    config = config or DemoConfig()
    console = make_console(stderr=True)
    start = time.perf_counter()
    threads, why = choose_threads(config.threads)
    torch.set_num_threads(threads)
    seeds = ", ".join(str(s) for s in config.seeds)
    console.print(f"[bold]1/3[/] training LinCIR phi for seed(s) {seeds} (torch threads: {threads}; {why})")
    run_dirs = {seed: train_demo_lincir(config, seed, console, threads) for seed in config.seeds}
    console.print("[bold]2/3[/] evaluating on the shapes benchmark")
    settings = EvalSettings(results_dir=config.results_dir, overwrite=config.overwrite)
    results, lincir = [], []
    runs = [(f"lincir s{seed}", "lincir", run_dir) for seed, run_dir in run_dirs.items()]
    runs += [(name, name, None) for name in BASELINES + TRAINING_FREE]
    with keep_splits():
        for label, name, checkpoint in runs:
            request = RunRequest(name, "shapes", BACKBONE, "test", checkpoint=checkpoint)
            outcome = evaluate(resolve(request), settings)
            refreshed = (
                checkpoint is not None and outcome.reused and refresh_training_record(outcome.result, checkpoint)
            )
            results.append(outcome.result)
            if name == "lincir":
                lincir.append(outcome.result)
            m = {k: outcome.result.metrics.get(k, float("nan")) for k in SHOWN}
            console.print(
                f"  {label:14s} mAP@10 {m['mAP@10']:6.2f}  R@1 {m['R@1']:6.2f}  "
                f"(descriptive {m['descriptive_R@1']:6.2f}, imperative {m['imperative_R@1']:6.2f})"
                f"{'  [result reused]' if outcome.reused else ''}"
                f"{' (its training record now describes the phi trained here)' if refreshed else ''}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
    if len(lincir) > 1:
        import statistics

        values = [r.metrics["mAP@10"] for r in lincir]
        console.print(
            f"  lincir over {len(values)} seeds: mAP@10 {statistics.fmean(values):.2f} ± "
            f"{statistics.stdev(values):.2f} (sample std)",
            highlight=False,
        )
    if config.leaderboard is not None:
        console.print(f"[bold]3/3[/] leaderboard -> {config.leaderboard}")
        render_leaderboard(config.results_dir, config.leaderboard, config.chart)
    console.print(f"done in {time.perf_counter() - start:.0f} s")
    return results


def refresh_training_record(result: RunResult, run_dir: Path) -> bool:
    """A reused LinCIR result whose phi was trained again here (the same weights, so the same run key: training is
    deterministic) records this machine's training, not the one that first wrote it (a fresh clone's committed
    result). Returns whether the record changed."""
    from cirbench.methods.lincir import read_train_meta, resolve_checkpoint
    from cirbench.results import save_result

    checkpoint = resolve_checkpoint(run_dir)
    meta = read_train_meta(checkpoint)
    if meta is None or meta == result.method.train_meta or result.path is None:
        return False
    result.method.train_meta = meta
    result.method.checkpoint = str(checkpoint)
    result.timing.update(
        train_s=meta.get("wall_time_s"),
        train_device=meta.get("device_type"),
        train_device_count=meta.get("device_count"),
    )
    save_result(result, result.path, None)
    return True


def render_leaderboard(results_dir: Path, out: Path, chart: Path | None) -> None:
    """Write the markdown leaderboard (published rows beside ours) and the summary chart."""
    from cirbench import leaderboard as lb
    from cirbench.io import atomic_write_text

    reported = results_dir / "reported.yaml"
    entries = lb.collect_entries(results_dir, reported if reported.is_file() else None)
    atomic_write_text(out, lb.render_markdown(entries))
    if chart is not None:
        lb.write_chart(entries, chart)
