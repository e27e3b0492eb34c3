"""A short `cirbench demo` end to end: LinCIR trained from text alone must beat image-only and text-only."""

from __future__ import annotations

from typer.testing import CliRunner

from cirbench.cli import app
from cirbench.results import iter_results


def demo_args(tmp_path, steps: int = 120) -> list[str]:
    return [
        "demo",
        "--steps",
        str(steps),
        "--batch",
        "64",
        "--out",
        str(tmp_path / "runs"),
        "--results-dir",
        str(tmp_path / "results"),
        "--leaderboard",
        str(tmp_path / "LEADERBOARD.md"),
        "--chart",
        str(tmp_path / "chart.png"),
    ]


def test_short_demo_runs_end_to_end_and_lincir_beats_single_modality_baselines(tmp_path):
    results = tmp_path / "results"
    board = tmp_path / "LEADERBOARD.md"
    out = CliRunner().invoke(app, demo_args(tmp_path))
    assert out.exit_code == 0, out.output
    by_method = {r.method.name: r for r in iter_results(results)}
    assert set(by_method) == {
        "lincir",
        "image-only",
        "text-only",
        "image+text",
        "random",
        "slerp",
        "fusion-sum",
        "fusion-product",
    }
    assert by_method["slerp"].method.options["alpha"] == 0.8  # shapes has no Slerp default: the option's own
    score = {name: r.metrics["mAP@10"] for name, r in by_method.items()}
    assert score["lincir"] > score["image-only"] and score["lincir"] > score["text-only"]
    assert score["lincir"] > score["random"] + 10
    lincir = by_method["lincir"]
    assert lincir.timing["train_s"] > 0 and lincir.timing["train_device"] == "cpu"
    assert lincir.method.training_data.startswith("text only")
    text = board.read_text()
    assert "## shapes" in text and "lincir" in text and "image+text" in text
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
    runs = [r for r in iter_results(tmp_path / "results") if r.method.name == "lincir"]
    assert len(runs) == 2 and {r.method.train_meta["config"]["seed"] for r in runs} == {0, 1}
    for seed in (0, 1):
        assert (tmp_path / "runs" / f"seed-{seed}" / "corpus-20000.txt").is_file()

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


def test_demo_refuses_bad_seed_lists(tmp_path):
    for bad in ("a,b", "1,1", ","):
        out = CliRunner().invoke(app, [*demo_args(tmp_path), "--seeds", bad])
        assert out.exit_code == 2 and "--seeds" in out.output, out.output
