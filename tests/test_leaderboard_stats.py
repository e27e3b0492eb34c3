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
from cirbench.leaderboard.significance import adjacent_notes
from cirbench.query_scores import QueryScores

ROOT = Path(__file__).resolve().parents[1]


def run_entry(method: str, value: float, key: str, backbone: str = "shapes-clip:v1", **extra) -> Entry:
    return Entry("shapes", "test", method, backbone, {"mAP@10": value, "R@1": value}, "run", run_key=key, **extra)


def scores(values: list[float]) -> SimpleNamespace:
    found = QueryScores([str(i) for i in range(len(values))], ["all"] * len(values))
    found.add("mAP@10", np.asarray(values) / 100)
    return SimpleNamespace(scores=found)


def test_adjacent_runs_that_a_paired_test_cannot_separate_are_listed():
    """a and b rank every query the same (p = 1); c misses every query a hits (p tiny); d uses another backbone."""
    hit = [100.0] * 30 + [0.0] * 30
    entries = [
        run_entry("a", 50.0, "ka"),
        run_entry("b", 50.0, "kb"),
        run_entry("c", 0.0, "kc"),
        run_entry("d", 50.0, "kd", backbone="other"),
    ]
    found = {"ka": scores(hit), "kb": scores(hit), "kc": scores([0.0] * 60), "kd": scores(hit)}
    notes = adjacent_notes(entries, found, resamples=2000, seed=0, alpha=0.05)
    (line,) = notes["shapes"]
    assert "a and b (Δ mAP@10 +0.00, p = 1.000)" in line and "shapes-clip:v1" in line
    assert " c " not in line and "other" not in line


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


def test_ci_adds_half_widths_to_run_rows_only(tmp_path):
    results = tmp_path / "results"
    (results / "runs").mkdir(parents=True)
    import shutil

    source = ROOT / "results" / "runs" / "shapes"
    shutil.copytree(source, results / "runs" / "shapes")
    out = CliRunner().invoke(
        app,
        ["leaderboard", "--results-dir", str(results), "--benchmark", "shapes", "--ci", "--resamples", "500",
         "--columns", "mAP@10,R@1", "--per-seed", "--bare", "--no-reported"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    rows = [line for line in out.output.splitlines() if line.startswith("| ") and "run `" in line]
    assert rows and all(len(re.findall(r"\d(?:\*\*)? ± \d", row)) == 2 for row in rows)
    assert "half the width of its 95 % bootstrap interval" in out.output


def test_readme_results_table_is_the_tools_output():
    """The README's shapes table is generated: `cirbench leaderboard` over the committed results must print it."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(
        r"<!-- generated: (cirbench leaderboard [^\n]*?) -->\n(.*?)\n<!-- end generated -->", readme, re.S
    )
    assert match, "README.md lacks the generated results block"
    args = match[1].split()[1:]
    out = CliRunner().invoke(app, [*args, "--results-dir", str(ROOT / "results")])
    assert out.exit_code == 0, out.output
    assert out.output.strip() == match[2].strip()
    assert collect_entries(ROOT / "results", None)  # the committed results load
