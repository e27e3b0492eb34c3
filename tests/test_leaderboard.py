"""Leaderboard: golden markdown from hand-written result files + reported rows, CSV, chart, CLI."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cirbench import leaderboard as lb
from cirbench.leaderboard.tables import chosen_columns

FIXTURES = Path(__file__).parent / "fixtures"
RESULTS = FIXTURES / "results"
REPORTED_SMALL = FIXTURES / "reported_small.yaml"
GOLDEN = FIXTURES / "leaderboard_golden.md"
REPO_REPORTED = Path(__file__).resolve().parents[1] / "results" / "reported.yaml"


@pytest.fixture(scope="module")
def entries() -> list[lb.Entry]:
    return lb.collect_entries(RESULTS, REPORTED_SMALL)


@pytest.fixture(scope="module")
def cli():
    from cirbench.cli import app

    return app


def test_markdown_matches_golden(entries):
    assert lb.render_markdown(entries) == GOLDEN.read_text(encoding="utf-8")


def test_row_order_is_deterministic(entries):
    shuffled = list(entries)
    random.Random(3).shuffle(shuffled)
    assert lb.render_markdown(shuffled) == lb.render_markdown(entries)


def test_delta_only_like_with_like(entries):
    fiq = lb.benchmark_table(entries, "fashioniq")
    delta = fiq[fiq["Source"] == "delta"]
    assert len(delta) == 1
    assert delta["Method"].item() == "lincir" and delta["Backbone"].item() == "ViT-L-14:openai"
    assert delta["dress_R@10"].item() == pytest.approx(20.525533 - 20.92)
    # CIRR/CIRCO runs are on val, the published rows on test: no delta, and the table says why.
    for bench in ("cirr", "circo"):
        assert not (lb.benchmark_table(entries, bench)["Source"] == "delta").any()
    notes = lb.not_compared(entries, "cirr")
    assert any("run on val, reported on test" in n for n in notes)
    # A run with a non-default protocol never gets a delta.
    soft = [e for e in entries if e.run_key == "51aa6e3c0b84"][0]
    assert soft.protocol == ("scoring=soft", "skipped 12 queries")


def test_missing_metrics_are_never_filled(entries):
    cirr = lb.benchmark_table(entries, "cirr")
    lincir_test = cirr[(cirr["Source"] == "reported") & (cirr["Backbone"] == "ViT-L-14:openai")]
    assert pd.isna(lincir_test["R@50"].item())
    big = cirr[cirr["Backbone"] == "ViT-bigG-14:laion2b_s39b_b160k"]
    assert pd.isna(big["Rsubset@1"].item()) and pd.isna(big["Avg"].item())  # no Avg without Rsubset@1
    md = lb.render_markdown(entries, "cirr")
    row = next(line for line in md.splitlines() if "ViT-bigG-14" in line)
    assert row.count(lb.MISSING) >= 5


def test_cirr_avg_and_best_per_split(entries):
    cirr = lb.benchmark_table(entries, "cirr")
    run = cirr[cirr["Run key"] == "c04e5b7a1d22"]
    assert run["Avg"].item() == pytest.approx((54.269313 + 57.258) / 2)
    best = lb.best_mask(cirr, ["R@1"])
    # best R@1 on test (35.25, reported bigG) and on val (24.85, lincir run) are both marked
    assert set(cirr.loc[best["R@1"], "R@1"].round(2)) == {35.25, 24.85}


def test_row_metadata(entries):
    fiq = lb.benchmark_table(entries, "fashioniq")
    run = fiq[fiq["Source"] == "run"].iloc[0]
    assert run["Train time"] == "41.5 min, 1× H100 80GB HBM3"
    assert run["Training data"].startswith("zero-shot: CC3M captions")
    big = fiq[fiq["Backbone"] == "ViT-bigG-14:laion2b_s39b_b160k"].iloc[0]
    assert big["Train time"] == "48 min, 8× A100"
    assert "survey README" in big["Citation"]
    # the test1 run has no metrics (no public labels): it feeds submissions, not tables
    assert not any(e.split == "test1" for e in entries)


def test_headline_columns_by_default_and_every_metric_with_all(entries):
    """shapes declares its headline few; `--columns all` gives every metric: overall first, then by prefix, mAP
    before R, by K. A benchmark this install does not know shows every metric its rows have."""
    assert lb.benchmark_columns("shapes", entries) == ["mAP@10", "R@1", "descriptive_R@1", "imperative_R@1"]
    every = ["mAP@10", "R@1", "descriptive_R@1", "imperative_R@1", "mAP@5", "R@10"]
    every += ["descriptive_mAP@10", "descriptive_R@10", "imperative_mAP@10", "imperative_R@10"]
    assert chosen_columns("shapes", entries, ["all"]) == every
    unknown = [lb.Entry("mine", "test", "m", "b", {"x_R@1": 1.0, "R@5": 2.0, "mAP@5": 3.0}, "run", run_key="k")]
    assert lb.benchmark_columns("mine", unknown) == ["mAP@5", "R@5", "x_R@1"]
    assert "shapes mAP@10 (val)" in lb.summary_table(entries).columns
    text = lb.render_markdown(entries, "shapes")
    assert '`descriptive_`: queries worded "is blue"; `imperative_`: "make it blue"; no prefix: both.' in text


def test_summary_columns_per_split(entries):
    summary = lb.summary_table(entries)
    assert {"CIRCO mAP@10 (test)", "CIRCO mAP@10 (val)", "CIRR R@1 (val)", "GeneCIS avg_R@1 (test)"} <= set(
        summary.columns
    )
    image_only_run = summary[(summary["Method"] == "image-only") & (summary["Source"] == "run")]
    assert image_only_run["CIRR R@1 (val)"].item() == pytest.approx(7.127481)  # default-protocol run, not soft


def test_csv(entries):
    text = lb.render_csv(entries)
    df = pd.read_csv(io.StringIO(text))
    assert list(df.columns[:8]) == ["Benchmark", *lb.META_COLUMNS]
    assert set(df["Benchmark"]) == {"circo", "cirr", "fashioniq", "genecis", "shapes"}
    assert set(df["Source"]) == {"run", "reported", "delta"}
    cirr_only = pd.read_csv(io.StringIO(lb.render_csv(entries, "cirr")))
    assert set(cirr_only["Benchmark"]) == {"cirr"}
    assert "Avg" in cirr_only.columns and "mAP@10" not in cirr_only.columns
    assert cirr_only.loc[cirr_only["Run key"] == "c04e5b7a1d22", "R@1"].item() == 24.85
    lincir = cirr_only[(cirr_only["Source"] == "reported") & (cirr_only["Backbone"] == "ViT-L-14:openai")]
    assert pd.isna(lincir["R@50"].item())  # missing stays empty


def test_chart_is_png(entries, tmp_path):
    path = lb.write_chart(entries, tmp_path / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_time_formats():
    assert lb.format_train_time(186, "cpu", 1) == "3.1 min, 1× cpu"
    assert lb.format_train_time(None, "cpu", 1) is None
    assert lb.parse_reported_time("48 min on 8x A100 (LinCIR README)") == "48 min, 8× A100"
    assert lb.parse_reported_time("not reported for ViT-L") is None


def test_repo_reported_file_loads():
    found = lb.load_reported(REPO_REPORTED)
    assert {e.benchmark for e in found} == {"circo", "cirr", "fashioniq", "genecis"} | {
        f"freedom-{d}" for d in ("imagenet-r", "minidn", "nico", "ltll")
    }
    assert {e.split for e in found if e.benchmark in ("cirr", "circo")} == {"test"}
    assert {e.split for e in found if e.benchmark == "fashioniq"} == {"val"}


def test_repo_reported_file_copies_published(shared_annotations):
    published = shared_annotations.parent / "reference" / "published_results.yaml"
    if not published.is_file():
        pytest.skip(f"{published} not found")
    ours = yaml.safe_load(REPO_REPORTED.read_text(encoding="utf-8"))["rows"]
    copied = yaml.safe_load(published.read_text(encoding="utf-8"))
    assert ours[: len(copied)] == copied  # the reference's rows, unchanged and in order
    covered = {k for row in copied for k, v in row.items() if isinstance(v, dict)}
    for row in ours[len(copied) :]:  # then only benchmarks the reference does not cover, each with its source
        assert row["source"] and not covered & {k for k, v in row.items() if isinstance(v, dict)}


def test_cli_markdown_csv_chart(cli, tmp_path):
    runner = CliRunner()
    args = ["leaderboard", "--results-dir", str(RESULTS), "--reported", str(REPORTED_SMALL)]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert res.stdout == GOLDEN.read_text(encoding="utf-8")
    out, chart = tmp_path / "LEADERBOARD.md", tmp_path / "lb.png"
    res = runner.invoke(cli, [*args, "--out", str(out), "--chart", str(chart)])
    assert res.exit_code == 0, res.output
    assert out.read_text(encoding="utf-8") == GOLDEN.read_text(encoding="utf-8")
    assert chart.read_bytes()[:4] == b"\x89PNG"
    res = runner.invoke(cli, [*args, "--benchmark", "cirr", "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert set(pd.read_csv(io.StringIO(res.stdout))["Benchmark"]) == {"cirr"}
    res = runner.invoke(
        cli, ["leaderboard", "--results-dir", str(RESULTS), "--no-reported", "--benchmark", "fashioniq"]
    )
    assert res.exit_code == 0 and "reported" not in res.stdout.split("## FashionIQ")[1]


def test_cli_errors(cli, tmp_path):
    """User errors exit 2 with one line, no traceback."""
    runner = CliRunner()
    cases = [
        (["--results-dir", str(RESULTS), "--format", "xlsx"], "--format must be md or csv"),
        (["--results-dir", str(tmp_path), "--no-reported"], f"no results under {tmp_path / 'runs'} and no published"),
        (["--results-dir", str(RESULTS), "--reported", str(tmp_path / "x.yaml")], "not found"),
        (["--results-dir", str(RESULTS), "--no-reported", "--benchmark", "genecis"], "no benchmark 'genecis' results"),
    ]
    for args, message in cases:
        res = runner.invoke(cli, ["leaderboard", *args])
        assert res.exit_code == 2, res.output
        assert message in res.output and "Traceback" not in res.output
