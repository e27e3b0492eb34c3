"""A short `cirbench demo` end to end: LinCIR trained from text alone must beat image-only and text-only."""

from __future__ import annotations

from typer.testing import CliRunner

from cirbench.cli import app
from cirbench.results import iter_results


def test_short_demo_runs_end_to_end_and_lincir_beats_single_modality_baselines(tmp_path):
    results = tmp_path / "results"
    board = tmp_path / "LEADERBOARD.md"
    out = CliRunner().invoke(
        app,
        [
            "demo",
            "--steps",
            "120",
            "--batch",
            "64",
            "--out",
            str(tmp_path / "runs"),
            "--results-dir",
            str(results),
            "--leaderboard",
            str(board),
            "--chart",
            str(tmp_path / "chart.png"),
        ],
    )
    assert out.exit_code == 0, out.output
    by_method = {r["method"]["name"]: r for r in iter_results(results)}
    assert set(by_method) == {"lincir", "image-only", "text-only", "image+text", "random"}
    score = {name: r["metrics"]["mAP@10"] for name, r in by_method.items()}
    assert score["lincir"] > score["image-only"] and score["lincir"] > score["text-only"]
    assert score["lincir"] > score["random"] + 10
    lincir = by_method["lincir"]
    assert lincir["timing"]["train_s"] > 0 and lincir["timing"]["train_device"] == "cpu"
    assert lincir["method"]["training_data"].startswith("text only")
    text = board.read_text()
    assert "## shapes" in text and "lincir" in text and "image+text" in text
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
