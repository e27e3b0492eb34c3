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
    assert set(by_method) == {"lincir", "image-only", "text-only", "image+text", "random"}
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
    meta = json.loads((tmp_path / "runs" / "lincir" / "train_meta.json").read_text())
    assert meta["steps"] == 6 and meta["segments"] == 2
    config = tmp_path / "runs" / "lincir" / "config.json"
    older = {k: v for k, v in json.loads(config.read_text()).items() if k != "pack"}
    config.write_text(json.dumps(older))
    again = CliRunner().invoke(app, demo_args(tmp_path, steps=6))
    assert again.exit_code == 0, again.output
    assert "retraining" in again.output
    assert json.loads(config.read_text())["pack"] is True
