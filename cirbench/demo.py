"""``cirbench demo``: the whole pipeline on the shapes world, on any laptop, with nothing downloaded.

Loads the shipped tiny CLIP (``shapes-clip:v2``), writes a text-only corpus from the caption grammar, trains
LinCIR's phi on it (the paper recipe, scaled down), evaluates LinCIR and the training-free baselines on the
``shapes`` benchmark, and renders the leaderboard. Every step reuses what an earlier run finished (training
resumes, results are reused), so a second ``cirbench demo`` is fast.

Everything it writes goes into its own folder (``runs/demo/``: the corpus, the phi, ``results/``, ``LEADERBOARD.md``
and ``leaderboard.png``), which git ignores, so the checkout stays clean. A result the checkout's committed
``results/`` already holds under the same run key (the baselines: the same code, the same rendered world) is copied
in byte for byte and reused, not computed again; a committed result that does not match is not copied at all.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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

    out: Path = Path("runs/demo")  # ignored by git: a demo leaves the checkout clean
    results_dir: Path | None = None  # None: <out>/results
    steps: int = 600
    global_batch: int = 64
    corpus_size: int = 20_000
    seeds: tuple[int, ...] = (0,)
    threads: int | None = None  # None: the free cores (see choose_threads)
    checkpoint_every: int = 200
    leaderboard: Path | None = None  # None: <out>/LEADERBOARD.md; see ``board``
    chart: Path | None = None  # None: <out>/leaderboard.png
    write_leaderboard: bool = True
    overwrite: bool = False
    progress: bool = True
    shapes_options: dict[str, Any] = field(default_factory=dict)  # the benchmark's protocol options (``-p``)
    reuse_from: Path | None = field(default_factory=lambda: committed_results())  # None: compute every result

    def results(self) -> Path:
        return self.results_dir if self.results_dir is not None else self.out / "results"

    def board(self) -> tuple[Path, Path] | None:
        """The markdown leaderboard and the chart to write, None when ``write_leaderboard`` is off."""
        if not self.write_leaderboard:
            return None
        return self.leaderboard or self.out / "LEADERBOARD.md", self.chart or self.out / "leaderboard.png"


def committed_results() -> Path | None:
    """The checkout's ``results/`` (a clone or an editable install), whose committed runs the demo may reuse; None
    for an installed wheel, which ships none. Found beside the package, so it does not depend on the working
    directory."""
    folder = Path(__file__).resolve().parents[1] / "results"
    return folder if (folder / "runs").is_dir() else None


def choose_threads(requested: int | None) -> tuple[int, str]:
    """Torch threads for the demo: the one rule every command uses (``cirbench.threads``, measured there)."""
    from cirbench.threads import choose

    choice = choose(requested)
    return choice.threads, choice.why


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
    results_dir = config.results()
    console.print(f"[bold]2/3[/] evaluating on the shapes benchmark -> {results_dir}", highlight=False)
    settings = EvalSettings(results_dir=results_dir, overwrite=config.overwrite)
    results, lincir = [], []
    runs = [(f"lincir s{seed}", "lincir", run_dir) for seed, run_dir in run_dirs.items()]
    runs += [(name, name, None) for name in BASELINES + TRAINING_FREE]
    with keep_splits():
        for label, name, checkpoint in runs:
            request = RunRequest(
                name, "shapes", BACKBONE, "test", checkpoint=checkpoint, protocol_options=config.shapes_options
            )
            spec = resolve(request)
            with borrowed(config, name) as copies:
                outcome = evaluate(spec, settings)
                committed = outcome.reused and outcome.path in copies
                copies.discard(outcome.path)  # kept; the other copies (other keys) are removed on leaving
            refreshed = (
                checkpoint is not None and outcome.reused and refresh_training_record(outcome.result, checkpoint)
            )
            results.append(outcome.result)
            if name == "lincir":
                lincir.append(outcome.result)
            m = {k: outcome.result.metrics.get(k, float("nan")) for k in SHOWN}
            reused = "  [committed result reused]" if committed else "  [result reused]" if outcome.reused else ""
            console.print(
                f"  {label:14s} mAP@10 {m['mAP@10']:6.2f}  R@1 {m['R@1']:6.2f}  "
                f"(descriptive {m['descriptive_R@1']:6.2f}, imperative {m['imperative_R@1']:6.2f})"
                f"{reused}"
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
    board = config.board()
    options = " -p ".join(f"{k}={v}" for k, v in config.shapes_options.items())
    if board is not None:
        console.print(f"[bold]3/3[/] leaderboard -> {board[0]}, {board[1]}", highlight=False)
        if not render_leaderboard(results_dir, *board):
            console.print(f"  no chart: it shows default-protocol runs only, and these ran at -p {options}")
    console.print(
        f"done in {time.perf_counter() - start:.0f} s; the demo's files are in {config.out}. "
        f"See it again: cirbench leaderboard --results-dir {results_dir}",
        highlight=False,
        soft_wrap=True,
    )
    return results


@contextlib.contextmanager
def borrowed(config: DemoConfig, method: str) -> Iterator[set[Path]]:
    """Copy the committed results of ``method`` on shapes (``config.reuse_from``) that the demo's folder lacks, byte
    for byte, so that the evaluation may reuse the one whose run key matches; the copies still in the yielded set
    on leaving (other keys: another checkpoint, other options) are removed, so the folder holds only the demo's
    runs. The committed folder is only read."""
    from cirbench.results import rankings_path, slug

    copies: set[Path] = set()
    source, target = config.reuse_from, config.results()
    if source is not None and source.resolve() != target.resolve():
        found = source / "runs" / "shapes" / "test"
        for path in sorted(found.glob(f"{slug(method)}--{slug(BACKBONE)}--*.json")):
            dest = target / "runs" / "shapes" / "test" / path.name
            if dest.exists() or not rankings_path(path).is_file():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(rankings_path(path), rankings_path(dest))
            shutil.copyfile(path, dest)
            copies.add(dest)
    try:
        yield copies
    finally:
        for dest in copies:
            dest.unlink(missing_ok=True)
            rankings_path(dest).unlink(missing_ok=True)


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


def render_leaderboard(results_dir: Path, out: Path, chart: Path | None) -> bool:
    """Write the markdown leaderboard (published rows beside ours, when the folder has ``reported.yaml``) and the
    summary chart; returns whether a chart was written: it draws default-protocol runs only, so a demo at other
    ``-p`` options has none."""
    from cirbench import leaderboard as lb
    from cirbench.io import atomic_write_text
    from cirbench.leaderboard.chart import chart_panels

    reported = results_dir / "reported.yaml"
    entries = lb.collect_entries(results_dir, reported if reported.is_file() else None)
    atomic_write_text(out, lb.render_markdown(entries))
    if chart is None or not chart_panels(entries):
        return False
    lb.write_chart(entries, chart)
    return True
