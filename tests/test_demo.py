"""`cirbench demo`: the full demo once (its default folder, committed results reused byte for byte, LinCIR trained
from text alone beating image-only and text-only), then reuse, resume and seeds on a small shapes configuration."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cirbench.cli import app
from cirbench.results import iter_results

ROOT = Path(__file__).resolve().parents[1]
METHODS = {"lincir", "image-only", "text-only", "image+text", "random", "slerp", "fusion-sum", "fusion-product"}
# A small world and corpus: 576 gallery images, 80 queries, 400 captions per seed (the demo: 1,152, 800, 20,000).
SMALL = ["--corpus-size", "400", "-p", "renders=1", "-p", "queries_per_style=40"]


def demo_args(tmp_path: Path, steps: int, reuse_from: Path | None = None) -> list[str]:
    """A small demo with its files in ``tmp_path``, reusing nothing committed unless ``reuse_from`` is given."""
    reuse = reuse_from if reuse_from is not None else tmp_path / "nothing-committed"
    return [
        "demo", "--steps", str(steps), "--batch", "64", *SMALL, "--reuse-from", str(reuse),
        "--out", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"),
        "--leaderboard", str(tmp_path / "LEADERBOARD.md"), "--chart", str(tmp_path / "chart.png"),
    ]  # fmt: skip


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip


def test_full_demo_writes_only_its_own_folder_reuses_committed_results_and_lincir_beats_single_modalities(
    tmp_path, monkeypatch, committed_results
):
    """The README's `cirbench demo` at its defaults (but 120 steps on 4,000 captions: masking the default 20,000
    with spaCy alone took 14 s): every file lands in runs/demo/, which git ignores; the committed baselines are
    copied in byte for byte and reused, the committed LinCIR runs (another phi) are neither reused nor left behind,
    and the committed folder is only read."""
    monkeypatch.chdir(tmp_path)
    before = digests(committed_results)
    out = CliRunner().invoke(
        app, ["demo", "--steps", "120", "--corpus-size", "4000", "--reuse-from", str(committed_results)]
    )
    assert out.exit_code == 0, out.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
    demo = tmp_path / "runs" / "demo"
    assert sorted(p.name for p in demo.iterdir()) == ["LEADERBOARD.md", "leaderboard.png", "results", "seed-0"]
    assert digests(committed_results) == before

    by_method = {}
    for result in iter_results(demo / "results"):
        assert result.method.name not in by_method  # one run per method: no copy of another key stayed
        by_method[result.method.name] = result
    assert set(by_method) == METHODS
    for name, result in by_method.items():
        if name == "lincir":
            continue
        mine = Path(result.path)
        theirs = committed_results / mine.relative_to(demo / "results")
        assert mine.read_bytes() == theirs.read_bytes(), name
        assert mine.with_name(result.rankings_file).read_bytes() == theirs.with_name(result.rankings_file).read_bytes()
    lines = out.output.splitlines()
    assert sum(line.endswith("[committed result reused]") for line in lines) == 7
    [trained] = [line for line in lines if line.startswith("  lincir s0 ")]
    assert "reused" not in trained  # 120 steps: not the committed 600-step phi
    assert by_method["slerp"].method.options["alpha"] == 0.8  # shapes has no Slerp default: the option's own
    score = {name: r.metrics["mAP@10"] for name, r in by_method.items()}
    assert score["lincir"] > score["image-only"] and score["lincir"] > score["text-only"]
    assert score["lincir"] > score["random"] + 10
    lincir = by_method["lincir"]
    assert lincir.timing["train_s"] > 0 and lincir.timing["train_device"] == "cpu"
    assert lincir.method.training_data == "text only: runs/demo/seed-0/corpus-4000.txt"
    text = (demo / "LEADERBOARD.md").read_text()
    assert "## shapes" in text and "lincir" in text and "image+text" in text
    assert (demo / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"-> {Path('runs/demo/results')}" in out.output
    assert f"See it again: cirbench leaderboard --results-dir {Path('runs/demo/results')}" in out.output

    # In the checkout, git ignores every file the demo wrote: `git status` stays clean after it.
    written = [str(Path("runs/demo") / p.relative_to(demo)) for p in demo.rglob("*") if p.is_file()]
    try:
        ignored = subprocess.run(
            ["git", "-C", str(ROOT), "check-ignore", "--no-index", "--stdin"],
            input="\n".join(written), capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except OSError:
        pytest.skip("git is not installed")
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert sorted(ignored.stdout.splitlines()) == sorted(written)


def test_demo_retrains_a_run_left_by_another_recipe(tmp_path):
    """An older cirbench's demo run (here: one without the later `pack` option) is retrained, not a crash."""
    import json

    first = CliRunner().invoke(app, demo_args(tmp_path, steps=4))
    assert first.exit_code == 0, first.output
    longer = CliRunner().invoke(app, demo_args(tmp_path, steps=6))  # more steps: the same run continues
    assert longer.exit_code == 0, longer.output
    assert "retraining" not in longer.output
    meta = json.loads((tmp_path / "runs" / "seed-0" / "lincir" / "train_meta.json").read_text())
    assert meta["steps"] == 6 and meta["segments"] == 2
    config = tmp_path / "runs" / "seed-0" / "lincir" / "config.json"
    older = {k: v for k, v in json.loads(config.read_text()).items() if k != "pack"}
    config.write_text(json.dumps(older))
    again = CliRunner().invoke(app, demo_args(tmp_path, steps=6))
    assert again.exit_code == 0, again.output
    assert "retraining" in again.output
    assert json.loads(config.read_text())["pack"] is True


def test_demo_over_seeds_reuses_finished_work_and_the_leaderboard_averages_the_seeds(tmp_path):
    """Two seeds: one phi and one corpus each; a rerun trains and evaluates nothing; the leaderboard shows one
    LinCIR row, the mean ± sample std of the two runs; a retrained phi refreshes the reused result's training."""
    import json
    import statistics

    from cirbench.leaderboard import collect_entries

    args = [*demo_args(tmp_path, steps=8), "--seeds", "0,1", "--threads", "1"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "torch threads: 1; --threads" in first.output
    assert "[result reused]" not in first.output and "[committed result reused]" not in first.output
    runs = [r for r in iter_results(tmp_path / "results") if r.method.name == "lincir"]
    assert len(runs) == 2 and {r.method.train_meta["config"]["seed"] for r in runs} == {0, 1}
    assert {r.n_queries for r in iter_results(tmp_path / "results")} == {80}  # the -p options reached every run
    for seed in (0, 1):
        assert (tmp_path / "runs" / f"seed-{seed}" / "corpus-400.txt").is_file()
    # The chart draws default-protocol runs only: at other -p options there is none, and the demo says why.
    assert "no chart: it shows default-protocol runs only, and these ran at -p renders=1 -p queries_per_style=40" in (
        " ".join(first.output.split())
    )
    assert not (tmp_path / "chart.png").exists()

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert again.output.count("reusing the trained phi") == 2
    assert again.output.count("[result reused]") == len(runs) + 7

    lincir = [e for e in collect_entries(tmp_path / "results", None) if e.method == "lincir"]
    assert len(lincir) == 1 and lincir[0].seeds == (0, 1) and len(lincir[0].members) == 2
    values = [r.metrics["mAP@10"] for r in runs]
    assert lincir[0].metrics["mAP@10"] == statistics.fmean(values)
    assert lincir[0].spread["mAP@10"] == statistics.stdev(values)
    board = (tmp_path / "LEADERBOARD.md").read_text()
    assert f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}" in board
    assert "lincir (cirbench run, step 8), 2 seeds" in board and "sample standard deviation over its seeds" in board
    per_seed = [e for e in collect_entries(tmp_path / "results", None, aggregate=False) if e.method == "lincir"]
    assert len(per_seed) == 2

    # The same phi trained elsewhere (a fresh clone's committed result): the rerun records this machine's training.
    meta_file = tmp_path / "runs" / "seed-0" / "lincir" / "train_meta.json"
    meta = json.loads(meta_file.read_text())
    from cirbench.run_digests import write_bytes  # a run folder's files are recorded (issue 19): rewrite it so

    write_bytes(meta_file.parent, meta_file.name, json.dumps({**meta, "wall_time_s": 1234.5}).encode())
    third = CliRunner().invoke(app, args)
    assert "its training record now describes the phi trained here" in third.output
    lincir_runs = [r for r in iter_results(tmp_path / "results") if r.method.name == "lincir"]
    refreshed = next(r for r in lincir_runs if r.method.train_meta["config"]["seed"] == 0)
    assert refreshed.timing["train_s"] == 1234.5


def test_demo_refuses_bad_seed_lists_and_protocol_options_before_training(tmp_path):
    for bad in ("a,b", "1,1", ","):
        out = CliRunner().invoke(app, [*demo_args(tmp_path, steps=4), "--seeds", bad])
        assert out.exit_code == 2 and "--seeds" in out.output, out.output
    base = ["demo", "--out", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results")]
    out = CliRunner().invoke(app, [*base, "-p", "renders=0"])
    assert out.exit_code == 2, out.output
    assert "error: benchmark shapes: option renders='0' is not valid; expected a value in [1, 32]" in out.output
    out = CliRunner().invoke(app, [*base, "-p", "render=1"])
    assert out.exit_code == 2 and "unknown option(s) render" in out.output, out.output
    out = CliRunner().invoke(app, [*base, "-p", "renders=1", "-p", "renders=2"])
    assert out.exit_code == 2 and "renders is given twice" in out.output, out.output
    assert not (tmp_path / "runs").exists()  # refused before any corpus was written
