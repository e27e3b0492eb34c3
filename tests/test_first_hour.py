"""What a researcher runs into in the first hour: progress in logs, training logs, ``eval --limit``, one meaning per
flag, unwrapped output, ``score`` warnings, ``data check`` gallery size, and the leaderboard chart's panels."""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from cirbench.progress import PlainProgress, stage_progress

FIXTURES = Path(__file__).parent / "fixtures"
runner = CliRunner()


def cli(*args: object):
    from cirbench.cli import app

    return runner.invoke(app, [str(a) for a in args])


def _commands() -> dict[tuple[str, ...], Any]:
    """Every command of the CLI by its path (``("train", "lincir")``), groups included."""
    from cirbench.cli import app

    out: dict[tuple[str, ...], Any] = {}

    def walk(command: Any, path: tuple[str, ...]) -> None:
        out[path] = command
        if hasattr(command, "commands"):  # a group (typer may bring its own click classes)
            for name, sub in command.commands.items():
                walk(sub, (*path, name))

    walk(get_command(app), ())
    return out


# --- progress when output is not a terminal --------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_lines_say_stage_count_rate_and_time_left():
    clock, stream = FakeClock(), io.StringIO()
    plain = PlainProgress(stream, interval_s=10, every_percent=25, clock=clock)
    clock.now = 1.0
    assert plain.update("encode images", 10, 100) is None  # under 25 % and under 10 s: nothing yet
    clock.now = 3.0
    assert plain.update("encode images", 30, 100) == "encode images: 30/100 (30%) | 10.0/s | eta 0:07"
    clock.now = 12.0
    assert plain.update("encode images", 40, 100) is None  # 9 s since the last line, same 25 % band
    clock.now = 13.0
    assert plain.update("encode images", 45, 100) == "encode images: 45/100 (45%) | 3.5/s | eta 0:16"
    clock.now = 20.0
    assert plain.update("encode images", 100, 100) == "encode images: 100/100 (100%) | 5.0/s | eta done | 0:20 elapsed"
    assert plain.update("encode images", 100, 100) is None  # a finished stage says so once
    clock.now = 22.0  # the next stage's rate counts from when the previous one ended
    assert plain.update("queries", 8, 8) == "queries: 8/8 (100%) | 4.0/s | eta done | 0:02 elapsed"
    assert stream.getvalue().splitlines() == [
        "encode images: 30/100 (30%) | 10.0/s | eta 0:07",
        "encode images: 45/100 (45%) | 3.5/s | eta 0:16",
        "encode images: 100/100 (100%) | 5.0/s | eta done | 0:20 elapsed",
        "queries: 8/8 (100%) | 4.0/s | eta done | 0:02 elapsed",
    ]


def test_plain_progress_of_a_resumed_run_counts_only_its_own_steps():
    clock = FakeClock()
    plain = PlainProgress(io.StringIO(), clock=clock, starts={"lincir": 3000})
    clock.now = 100.0
    line = plain.update("lincir", 4000, 20000, extra="loss 0.1234 | 5,120 samples/s", unit="steps")
    assert line == "lincir: 4000/20000 steps (20%) | 10.0 steps/s | eta 26:40 | loss 0.1234 | 5,120 samples/s"


def test_stage_progress_writes_plain_lines_when_stderr_is_not_a_terminal(monkeypatch):
    stream = io.StringIO()  # not a TTY, as under SLURM or `2> log`
    monkeypatch.setattr(sys, "stderr", stream)
    with stage_progress("image+text shapes/test", True) as report:
        assert report is not None
        report("images", 1152, 1152)
    line = stream.getvalue().strip()
    assert line.startswith("image+text shapes/test images: 1152/1152 (100%) | ")
    assert line.endswith(" elapsed") and "/s | eta done | " in line
    with stage_progress("x", False) as report:
        assert report is None


# --- training logs -----------------------------------------------------------------------------------------------
CAPTIONS = ["a dog runs across the green grass", "the cat sits on a wooden table", "two children play on the beach"]


def _train_config(tmp_path: Path, out: str, **kw):
    from lincir_support import tiny_config

    corpus = tmp_path / "captions.txt"
    if not corpus.exists():
        corpus.write_text("\n".join(f"{c} {i}" for i in range(8) for c in CAPTIONS) + "\n")  # 24 captions
    return tiny_config(corpus, tmp_path / out, **{"steps": 6, "checkpoint_every": 2, **kw})


def _train_lines(run: Path) -> list[dict]:
    from cirbench.lincir.trainlog import read_metrics

    return [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]


@pytest.mark.usefixtures("one_thread")
def test_training_writes_metrics_curve_and_summary_and_a_resume_continues_them(tmp_path):
    from cirbench.io import append_line
    from cirbench.lincir.trainer import train

    full = train(_train_config(tmp_path, "full"))
    lines = _train_lines(tmp_path / "full")
    assert [r["step"] for r in lines] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(r["loss"]) and r["lr"] == 1e-3 and r["samples_per_s"] > 0 for r in lines)
    assert [r["loss"] for r in lines] == pytest.approx(full.losses, abs=1e-6)
    log = json.loads((tmp_path / "full" / "train_meta.json").read_text())["log"]
    lowest = min(lines, key=lambda r: r["loss"])
    assert log["final_loss"] == lines[-1]["loss"] and log["final_step"] == 6 and log["logged_steps"] == 6
    assert (log["min_loss"], log["min_loss_step"]) == (lowest["loss"], lowest["step"])
    assert (tmp_path / "full" / log["loss_curve"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    part = _train_config(tmp_path, "part")
    train(part, stop_after=3)  # checkpointed at step 3
    run = tmp_path / "part"
    append_line(run / "metrics.jsonl", json.dumps({"kind": "train", "step": 4, "loss": 99.0}))  # a killed process
    append_line(run / "metrics.jsonl", json.dumps({"kind": "train", "step": 5, "loss": 99.0}))  # logged past it
    (run / "metrics.jsonl").open("a").write('{"kind": "train", "st')  # and a line cut short
    train(part, resume=True)
    resumed = _train_lines(run)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]  # unique, contiguous, none lost
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in lines], abs=1e-5)


@pytest.mark.usefixtures("one_thread")
def test_validation_metrics_go_into_the_log(tmp_path, monkeypatch):
    import cirbench.lincir.selection as selection
    from cirbench.lincir.trainer import train

    scores = iter([5.0, 9.0, 7.0])

    def fake(*_args, **_kwargs):
        return (lambda phi: {"R@1": next(scores), "R@5": 50.0}), "fake cirr val"

    monkeypatch.setattr(selection, "validation_evaluator", fake)
    train(_train_config(tmp_path, "run", val_every=2, val_first=None))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [(r["step"], r["R@1"], r["R@5"], r["best"]) for r in records if r["kind"] == "val"]
    assert val == [(2, 5.0, 50.0, True), (4, 9.0, 50.0, True), (6, 7.0, 50.0, False)]
    assert {r["selection_metric"] for r in records if r["kind"] == "val"} == {"R@1"}


@pytest.mark.usefixtures("one_thread")
def test_cli_train_says_where_the_log_is(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(f"{c} {i}" for i in range(8) for c in CAPTIONS) + "\n")
    out = tmp_path / "run"
    args = ["train", "lincir", "-b", "cirbench-tiny:random", "--corpus", corpus, "--out", out, "--steps", "2"]
    result = cli(*args, "--global-batch", "8", "--threads", "1", "--set", "log_every=1", "--no-allow-download")
    assert result.exit_code == 0, result.output
    where = f"log: {out / 'metrics.jsonl'}, {out / 'loss_curve.png'}; summary: {out / 'train_meta.json'}"
    assert where in result.output
    assert "loss " in result.output and " at step 2 (min " in result.output


# --- eval --limit ------------------------------------------------------------------------------------------------
def test_eval_limit_is_its_own_run_recorded_and_kept_out_of_the_ranking(tmp_path):
    from cirbench.evaluation import RunRequest, resolve
    from cirbench.evaluation.evaluator import load_split
    from cirbench.evaluation.spec import key_fields
    from cirbench.leaderboard import entry_from_result
    from cirbench.results import iter_results
    from cirbench.runkey import run_key

    results = tmp_path / ("a-results-folder-whose-name-is-long-enough-to-wrap-" * 2)
    args = ["eval", "-m", "image+text", "-b", "shapes-clip:v1", "--benchmark", "shapes", "--limit", "5"]
    out = cli(*args, "--results-dir", results, "--device", "cpu")
    assert out.exit_code == 0, out.output
    [result] = list(iter_results(results))
    assert result.n_queries == 5 and result.key_fields["limit"] == 5 and result.run_settings["limit"] == 5
    full = resolve(RunRequest("image+text", "shapes", "shapes-clip:v1", "test"))
    data = load_split(full.benchmark, full.split, full.root, full.options)
    assert result.run_key != run_key(key_fields(full, data.layout, data.annotations_sha256, None))
    assert "first 5 queries (--limit)" in entry_from_result(result).protocol
    assert not entry_from_result(result).default_protocol  # so the summary and the chart leave it out
    # Output is a file here, not a terminal: the long result path stays on one line, and progress is plain lines.
    assert any(line.strip() == f"wrote {result.path}" for line in out.output.splitlines()), out.output
    assert "image+text shapes/test queries: 5/5 (100%) | " in out.stderr
    assert "(first 5 queries only: --limit)" in out.output
    bad = cli(*args[:-1], "0", "--results-dir", results)
    assert bad.exit_code == 2 and "--limit 0: give a positive number of queries" in bad.output


# --- one meaning per flag, --version, -h ------------------------------------------------------------------------
def test_one_letter_means_one_thing_and_flags_agree():
    backbone, benchmark, download = [], [], []
    for path, command in _commands().items():
        for param in command.params:
            if "-b" in param.opts:
                backbone.append((path, param.name))
            if param.name == "benchmark":
                benchmark.append((path, tuple(param.opts)))
            if param.name == "allow_download":
                download.append((path, tuple(param.opts), tuple(param.secondary_opts)))
    assert backbone and {name for _, name in backbone} == {"backbone"}
    assert ("train", "lincir") in {p for p, _ in backbone} and ("eval",) in {p for p, _ in backbone}
    assert {("leaderboard",), ("submit",), ("eval",), ("score",), ("data", "check")} <= {p for p, _ in benchmark}
    assert {opts for _, opts in benchmark} == {("--benchmark",)}
    assert len(download) >= 3
    assert {(opts, secondary) for _, opts, secondary in download} == {(("--allow-download",), ("--no-allow-download",))}


def test_benchmark_flag_works_in_leaderboard_and_b_is_not_it():
    args = ["leaderboard", "--results-dir", FIXTURES / "results", "--no-reported"]
    table = cli(*args, "--benchmark", "cirr", "--format", "csv")
    assert table.exit_code == 0, table.output
    rows = table.output.splitlines()[1:]
    assert len(rows) == 3 and {row.split(",")[0] for row in rows} == {"cirr"}  # the three cirr runs with metrics
    assert cli(*args, "-b", "cirr").exit_code == 2  # no such option: -b is --backbone wherever it exists


def test_version_and_h_on_every_command():
    from cirbench import __version__

    version = cli("--version")
    assert version.exit_code == 0 and version.output == f"cirbench {__version__}\n"
    for path in _commands():
        result = cli(*path, "-h")
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output and "-h" in result.output, path


def test_help_in_a_file_is_not_cut_at_80_columns():
    text = cli("eval", "-h").output
    assert "Only the first N queries: a smoke test, stored as its own run, never ranked as a full one." in text
    assert max(len(line) for line in text.splitlines()) > 80


# --- eval --all, score, data check -------------------------------------------------------------------------------
def test_eval_all_prints_skip_reasons_whole_and_says_what_was_skipped(tmp_path):
    (tmp_path / "methods").mkdir()
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "methods" / "m.yaml").write_text("name: m\nmethod: image-only\nbackbone: cirbench-tiny:random\n")
    (tmp_path / "benchmarks" / "circo-test.yaml").write_text(
        f"name: circo-test\nbenchmark: circo\nsplit: test\nroot: {tmp_path / 'nowhere'}\n"
    )
    out = cli("eval", "--all", "--methods-dir", tmp_path / "methods", "--benchmarks-dir", tmp_path / "benchmarks")
    assert out.exit_code == 0, out.output
    [line] = [line for line in out.output.splitlines() if line.startswith("skipped")]
    assert line.startswith("skipped circo-test for every method card: data not found (")
    assert line.endswith(")") and str(tmp_path / "nowhere") in line


def _circo_rankings(tmp_path: Path, depth: int) -> tuple[Path, float]:
    """Each query ranks its first ground truth then ``depth - 1`` wrong ids; returns the file and mAP@10 (percent):
    AP@10 = 1 / min(10, number of ground truths)."""
    queries = json.loads((FIXTURES / "circo" / "annotations" / "val.json").read_text())
    ranks = {str(q["id"]): [q["gt_img_ids"][0], *range(1, depth)] for q in queries}
    expected = 100 * sum(1 / min(10, len(q["gt_img_ids"])) for q in queries) / len(queries)
    path = tmp_path / "ranks.json"
    path.write_text(json.dumps(ranks))
    return path, expected


def test_score_prints_two_decimals_and_warns_about_short_circo_rankings(tmp_path):
    args = ["score", "--benchmark", "circo", "--split", "val", "--root", FIXTURES / "circo"]
    rankings, expected = _circo_rankings(tmp_path, 3)
    out = cli(*args, "--rankings", rankings)
    assert out.exit_code == 0, out.output
    [row] = [line for line in out.output.splitlines() if "mAP@10 " in line]  # not the per-aspect mAP@10_...
    assert f"{expected:.2f}" in row and f"{expected:.4f}" not in row
    warnings = [line for line in out.output.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: 5 of 5 queries have fewer than 50 ranked ids: metrics up to @50 count the absent ranks as misses, "
        "and an evaluation server expects 50 ids per query"
    ]
    report = json.loads(cli(*args, "--rankings", rankings, "--json").output)
    assert report["n_short"] == 5 and report["depth"] == 50 and len(report["warnings"]) == 1
    full, _ = _circo_rankings(tmp_path, 50)
    assert json.loads(cli(*args, "--rankings", full, "--json").output)["warnings"] == []
    ranks = json.loads(full.read_text())
    full.write_text(json.dumps(dict(list(ranks.items())[:3])))
    missing = cli(*args, "--rankings", full)
    assert missing.exit_code == 2 and "pass --allow-missing (allow_missing=True in Python)" in missing.output


def test_data_check_prints_no_gallery_size_it_does_not_know(tmp_path):
    circo = cli("data", "check", "--benchmark", "circo", "--root", FIXTURES / "circo")
    assert "gallery_size" not in circo.output and "n_images: 25" in circo.output  # the gallery list is absent
    report = json.loads(cli("data", "check", "--benchmark", "circo", "--root", FIXTURES / "circo", "--json").output)
    assert report["gallery_size"] is None
    cirr = cli("data", "check", "--benchmark", "cirr", "--root", FIXTURES / "cirr")
    assert "gallery_size: 25" in cirr.output


# --- the leaderboard chart ---------------------------------------------------------------------------------------
def test_chart_panels_hold_only_rows_with_values_best_first(tmp_path):
    from cirbench.leaderboard import collect_entries
    from cirbench.leaderboard.chart import chart_panels, write_chart
    from cirbench.leaderboard.tables import headline_metric

    entries = collect_entries(FIXTURES / "results", FIXTURES / "reported_small.yaml")
    panels = chart_panels(entries)
    pairs = {
        (e.benchmark, e.split) for e in entries if e.default_protocol and headline_metric(e.benchmark) in e.metrics
    }
    assert {(p.benchmark, p.split) for p in panels} == pairs and len(panels) == len(pairs)
    for panel in panels:
        values = [b.value for b in panel.bars]
        assert values == sorted(values, reverse=True) and all(not math.isnan(v) for v in values)
        assert panel.metric == headline_metric(panel.benchmark)
    cirr_val = next(p for p in panels if (p.benchmark, p.split) == ("cirr", "val"))
    assert [(b.label, round(b.value, 2), b.source) for b in cirr_val.bars] == [
        ("lincir · ViT-L-14:openai", 24.85, "run"),
        ("image-only · ViT-B-32:openai", 7.13, "run"),
    ]
    assert [p.toy for p in panels] == sorted(p.toy for p in panels)  # the synthetic world last, apart
    assert {p.benchmark for p in panels if p.toy} == {"shapes"}
    first = write_chart(entries, tmp_path / "a.png").read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and write_chart(entries, tmp_path / "b.png").read_bytes() == first
