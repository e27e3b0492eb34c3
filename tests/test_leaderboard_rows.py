"""Every leaderboard row says what it is (issue 22): runs at other method options are rows of their own, labelled
with those options; the summary and the chart pick no run by recency; a seed mean is shown only over its seeds;
``--limit`` runs have a section of their own; intervals show as [lo, hi] where ± would misplace an endpoint.

The runs are the committed demo results, read back and changed the way the issue's commands changed them.
"""

from __future__ import annotations

import io
import statistics
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cirbench.cli import app
from cirbench.leaderboard import interval_text, render_csv, render_markdown
from cirbench.leaderboard.chart import chart_panels
from cirbench.leaderboard.entries import Entry, method_deviations, run_entries
from cirbench.leaderboard.summary import summary_table
from cirbench.leaderboard.tables import benchmark_table, section_rows
from cirbench.results import RunResult, iter_results

ROOT = Path(__file__).resolve().parents[1]
LATER = "2026-12-01T10:00:00+0000"  # after every committed run


@pytest.fixture(scope="module")
def committed(committed_results) -> dict[str, RunResult]:
    return {r.run_key: r for r in iter_results(committed_results)}


def changed(result: RunResult, key: str, metrics: dict[str, float] | None = None, **fields) -> RunResult:
    """A copy of ``result`` as another run: its key, a later date, other metrics and key fields."""
    out = result.model_copy(deep=True, update={"run_key": key, "created_at": LATER})
    out.key_fields.update(fields)
    if "method_options" in fields:
        out.method.options = {**out.method.options, **fields["method_options"]}
    if metrics:
        out.metrics = {**out.metrics, **metrics}
    return out


def with_options(result: RunResult, key: str, value: float, **options) -> RunResult:
    return changed(result, key, {"mAP@10": value}, method_options={**result.key_fields["method_options"], **options})


def summary_values(entries: list[Entry]) -> dict[str, float]:
    summary = summary_table(entries)
    return dict(zip(summary["Method"], summary["shapes mAP@10 (test)"].round(2), strict=True))


def test_a_run_at_other_options_is_its_own_labelled_row(committed):
    """`eval -m slerp -o alpha=0.6` and `-m fusion-sum -o text_weight=0.3`, made after the defaults: each is a row
    labelled with its option, in the table, the summary and the chart; the defaults keep their numbers."""
    slerp, fusion = committed["20aaca2760a0"], committed["5f8b412c96a3"]
    runs = [slerp, fusion, with_options(slerp, "a" * 12, 71.38, alpha=0.6)]
    runs.append(with_options(fusion, "b" * 12, 22.83, text_weight=0.3))
    entries = run_entries(runs)
    table = benchmark_table(entries, "shapes")
    assert dict(zip(table["Method"], table["mAP@10"].round(2), strict=True)) == {
        "fusion-sum": 59.92,
        "fusion-sum (text_weight=0.3)": 22.83,
        "slerp": 54.32,
        "slerp (alpha=0.6)": 71.38,
    }
    assert summary_values(entries) == {
        "fusion-sum": 59.92,
        "fusion-sum (text_weight=0.3)": 22.83,
        "slerp": 54.32,
        "slerp (alpha=0.6)": 71.38,
    }
    (panel,) = chart_panels(entries)
    assert {b.label: round(b.value, 2) for b in panel.bars}["slerp · shapes-clip:v2"] == 54.32
    assert "| slerp (alpha=0.6) " in render_markdown(entries)


def test_option_defaults_are_the_methods_own_for_that_benchmark():
    """Slerp's alpha defaults to 0.8, and to 0.9 on CIRR (its benchmark_defaults): 0.9 is a deviation only off
    CIRR; settings that do not change numbers (batch_size) are never shown."""
    assert method_deviations("slerp", "cirr", {"alpha": 0.9, "fiq_join": "both-orders"}) == ()
    assert method_deviations("slerp", "shapes", {"alpha": 0.9}) == ("alpha=0.9",)
    assert method_deviations("slerp", "shapes", {"alpha": 0.8, "batch_size": 7}) == ()
    assert method_deviations("not-a-method", "shapes", {"alpha": 0.1}) == ()


def test_a_run_at_other_options_gets_no_delta_against_the_published_method(committed):
    slerp = committed["20aaca2760a0"]
    entries = run_entries([slerp, with_options(slerp, "a" * 12, 71.38, alpha=0.6)])
    entries.append(Entry("shapes", "test", "slerp", "shapes-clip:v2", {"mAP@10": 50.0}, "reported", citation="p"))
    table = benchmark_table(entries, "shapes")
    delta = table[table["Source"] == "delta"]
    assert list(delta["Run key"]) == ["20aaca2760a0"] and delta["mAP@10"].round(2).item() == 4.32


def test_a_new_seed_run_joins_its_seeds_and_a_lone_seed_keeps_its_own_label(committed):
    """The demo case. A fresh `cirbench demo` (seed 0) records the training options added since the committed runs
    (at the values that reproduce them): it must join seeds 1 and 2, replacing the earlier seed-0 run (named), so
    the row stays the 3-seed mean 65.06. A seed-0 run of another recipe (300 steps) is a row of its own and the
    summary shows it under its own label, not the 3-seed one (it used to show 64.79 as "3 seeds")."""
    lincir = [committed[k] for k in ("bba182ea0881", "873d9e195ea0", "740f01544013")]
    rerun = changed(lincir[0], "c" * 12)
    rerun.method.train_meta["config"].update({"fused_adamw": False, "varlen_attention": "off", "cuda_graphs": False})
    other = changed(lincir[0], "d" * 12, {"mAP@10": 64.79})
    other.method.train_meta["config"]["steps"] = 300
    other.method.checkpoint_id = "e" * 64
    entries = run_entries([*lincir, rerun, other])
    mean = statistics.fmean(r.metrics["mAP@10"] for r in lincir)
    (row,) = [e for e in entries if e.seeds]
    assert row.seeds == (0, 1, 2) and row.members == ("c" * 12, "873d9e195ea0", "740f01544013")
    assert row.replaced == ("bba182ea0881",) and round(row.metrics["mAP@10"], 2) == round(mean, 2) == 65.06
    assert summary_values(entries) == {
        "lincir (cirbench run, step 600), 3 seeds": 65.06,
        "lincir (cirbench run, step 600)": 64.79,
    }
    text = render_markdown(entries, "shapes")
    assert "a seed run twice with one recipe counts once, by its latest run; left out: `bba182ea`." in text


def test_limit_runs_have_a_section_of_their_own(committed):
    image_text = committed["65431abe6468"]
    smoke = changed(image_text, "f" * 12, {"mAP@10": 99.0}, limit=50)
    entries = run_entries([image_text, smoke])
    assert [e.run_key for e in section_rows(entries, "shapes")] == ["65431abe6468"]
    assert summary_values(entries) == {"image+text": 59.92}
    text = render_markdown(entries)
    main, rest = text.split("## shapes: smoke runs (`--limit`)")
    assert "99.00" not in main and "| image+text | shapes-clip:v2 | test    | first 50 queries (--limit)" in rest
    assert "never ranked or bolded" in rest and "**99.00**" not in rest
    frame = pd.read_csv(io.StringIO(render_csv(entries)))
    assert frame.loc[frame["Run key"] == "f" * 12, "Benchmark"].item() == "shapes [--limit]"


def test_summary_says_which_run_it_shows_when_one_identity_has_two(committed):
    """Two runs of image+text with the same options and weights (another method version): the summary shows the
    later one and says so, naming the other."""
    image_text = committed["65431abe6468"]
    newer = changed(image_text, "9" * 12, {"mAP@10": 60.5}, method_version="2")
    entries = run_entries([image_text, newer])
    assert summary_values(entries) == {"image+text": 60.5}
    text = render_markdown(entries)
    assert "image+text · shapes-clip:v2, shapes mAP@10 (test): 2 runs of the same method, options and weights; " in text
    assert "shown: `99999999`" in text and "not shown: `65431abe` (2026-11-27T13:22:27+0000)" in text


@pytest.mark.parametrize(
    ("value", "low", "high", "shown"),
    [
        (2.27, 0.45, 4.55, " [0.45, 4.55]"),  # the issue's case: ± 2.05 would put the lower end at 0.22
        (1.004, 0.5, 1.508, " ± 0.50"),  # symmetric: rounding value and h apart moves an end by one unit only
        (50.0, 47.5, 52.5, " ± 2.50"),
        (50.0, 47.5, 52.53, " [47.50, 52.53]"),  # an end off by 0.02 at two decimals
        (0.0, 0.0, 0.0, " ± 0.00"),
    ],
)
def test_interval_text(value, low, high, shown):
    assert interval_text(value, low, high) == shown


def test_an_asymmetric_interval_is_shown_as_its_ends_in_the_table():
    entries = [
        Entry("shapes", "test", "a", "b", {"mAP@10": 2.27, "R@1": 50.0}, "run", run_key="k" * 12,
              intervals={"mAP@10": (0.45, 4.55), "R@1": (47.5, 52.5)}),
    ]  # fmt: skip
    row = next(line for line in render_markdown(entries, "shapes").splitlines() if "run `kkkkkkkk`" in line)
    assert "**2.27** [0.45, 4.55]" in row and "**50.00** ± 2.50" in row


def test_columns_all_shows_every_metric_and_the_default_the_headline_few(committed_results):
    args = ["leaderboard", "--results-dir", str(committed_results), "--no-reported", "--benchmark", "shapes", "--bare"]
    default = CliRunner().invoke(app, args)
    every = CliRunner().invoke(app, [*args, "--columns", "all"])
    assert default.exit_code == 0 and every.exit_code == 0, default.output + every.output
    header = next(line for line in default.output.splitlines() if line.startswith("| Method"))
    assert [c.strip() for c in header.split("|")[8:-1]] == ["mAP@10", "R@1", "descriptive_R@1", "imperative_R@1"]
    header = next(line for line in every.output.splitlines() if line.startswith("| Method"))
    metrics = {m for r in iter_results(committed_results) for m in r.metrics}
    assert len(header.split("|")[8:-1]) == len(metrics) == 24
