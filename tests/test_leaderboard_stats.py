"""The leaderboard's statistics: adjacent runs a paired test cannot separate, ± columns, seed rows, the CSV, and the
README table that the tool generates."""

from __future__ import annotations

import io
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from cirbench.cli import app
from cirbench.leaderboard import collect_entries, render_csv, render_markdown
from cirbench.leaderboard.entries import Entry
from cirbench.leaderboard.seeds import aggregate_seeds
from cirbench.leaderboard.significance import adjacent_pairs, pair_notes
from cirbench.query_scores import QueryScores

ROOT = Path(__file__).resolve().parents[1]


def run_entry(method: str, value: float, key: str, backbone: str = "shapes-clip:v1", **extra) -> Entry:
    return Entry("shapes", "test", method, backbone, {"mAP@10": value, "R@1": value}, "run", run_key=key, **extra)


def scores(values: list[float]) -> SimpleNamespace:
    found = QueryScores([str(i) for i in range(len(values))], ["all"] * len(values))
    found.add("mAP@10", np.asarray(values) / 100)
    return SimpleNamespace(scores=found)


def test_adjacent_runs_are_tested_and_the_notes_say_what_was_found():
    """a and b rank every query the same (p = 1); c misses every query a hits (p tiny); d uses another backbone."""
    hit = [100.0] * 30 + [0.0] * 30
    entries = [
        run_entry("a", 50.0, "ka"),
        run_entry("b", 50.0, "kb"),
        run_entry("c", 0.0, "kc"),
        run_entry("d", 50.0, "kd", backbone="other"),
    ]
    found = {"ka": scores(hit), "kb": scores(hit), "kc": scores([0.0] * 60), "kd": scores(hit)}
    pairs = adjacent_pairs(entries, found, resamples=2000, seed=0)
    (footnote, group) = pair_notes(pairs, resamples=2000)["shapes"]
    assert "Holm-adjusted over the 2 pairs tested in this table" in footnote
    assert group.startswith("Adjacent rows on test with shapes-clip:v1, by mAP@10:")
    assert "- a (50.00) above b (50.00): paired sign-flip test on mAP@10 over 60 queries, " in group
    assert "p = 1.000 after Holm over 2 adjacent pairs (raw p = 1.000); the order is not supported" in group
    assert (
        "- b (50.00) above c (0.00): paired sign-flip test on mAP@10 over 60 queries, sampled (2,000 random " in group
    )
    assert "the order is supported by this test." in group and " d " not in group and "other" not in group


def test_seed_rows_average_only_runs_of_one_recipe():
    base = {"seed_group": "g1"}
    entries = [
        run_entry("lincir", 40.0, "k0", seed=0, **base),
        run_entry("lincir", 44.0, "k1", seed=1, **base),
        run_entry("lincir", 48.0, "k2", seed=2, **base),
        run_entry("lincir", 10.0, "kx", seed=0, seed_group="other-recipe"),
    ]
    out = aggregate_seeds(entries)
    assert len(out) == 2
    mean = next(e for e in out if e.seeds)
    assert mean.seeds == (0, 1, 2) and mean.members == ("k0", "k1", "k2")
    assert mean.metrics["mAP@10"] == 44.0 and mean.spread["mAP@10"] == 4.0  # sample std of 40, 44, 48
    text = render_markdown(out, "shapes").replace("**", "")
    assert "44.00 ± 4.00" in text and "mean ± sd of runs `k0` `k1` `k2` (seeds 0,1,2)" in text
    assert "10.00 ±" not in text


def test_csv_leaves_missing_cells_empty_and_keeps_numbers_numeric():
    entries = [
        run_entry("a", 50.0, "ka"),
        Entry("shapes", "test", "b", "x", {"mAP@10": 3.0}, "reported", citation="paper"),
    ]
    frame = pd.read_csv(io.StringIO(render_csv(entries)))
    assert frame["R@1"].dtype == float and np.isnan(frame.loc[frame["Method"] == "b", "R@1"]).all()
    assert "–" not in render_csv(entries)
    assert frame["Train time"].isna().all()


def test_columns_and_bare_are_checked(tmp_path):
    out = CliRunner().invoke(app, ["leaderboard", "--benchmark", "shapes", "--columns", "mAP@10,nope"])
    assert out.exit_code == 2 and "nope not among shapes's metrics" in out.output
    assert len(out.output.strip().splitlines()) == 1
    out = CliRunner().invoke(app, ["leaderboard", "--bare"])
    assert out.exit_code == 2 and "--benchmark" in out.output


def test_ci_adds_intervals_to_run_rows_and_tests_all_9_adjacent_pairs(tmp_path, committed_results):
    results = tmp_path / "results"
    (results / "runs").mkdir(parents=True)
    import shutil

    shutil.copytree(committed_results / "runs" / "shapes", results / "runs" / "shapes")
    out = CliRunner().invoke(
        app,
        ["leaderboard", "--results-dir", str(results), "--benchmark", "shapes", "--ci", "--resamples", "500",
         "--columns", "mAP@10,R@1", "--per-seed", "--bare", "--no-reported"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    rows = [line for line in out.output.splitlines() if line.startswith("| ") and "run `" in line]
    interval = r"\d(?:\*\*)?(?: ± \d+\.\d\d| \[\d+\.\d\d, \d+\.\d\d\]) \|"
    assert rows and all(len(re.findall(interval, row)) == 2 for row in rows)
    assert "± h or [lo, hi] on a run: its 95 % interval over the queries" in out.output
    assert "Holm-adjusted over the 9 pairs tested in this table" in out.output


def test_readme_results_table_is_the_tools_output(committed_results):  # the tracked files: no user's run
    """The README's shapes table is generated: `cirbench leaderboard` over the committed results must print it."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(
        r"<!-- generated: (cirbench leaderboard [^\n]*?) -->\n(.*?)\n<!-- end generated -->", readme, re.S
    )
    assert match, "README.md lacks the generated results block"
    args = match[1].split()[1:]
    out = CliRunner().invoke(app, [*args, "--results-dir", str(committed_results)])
    assert out.exit_code == 0, out.output
    assert out.output.strip() == match[2].strip()
    assert collect_entries(committed_results, None)  # the committed results load
