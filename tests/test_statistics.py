"""Statistics with known answers: per-query vectors that give back the official metrics exactly (every benchmark,
real annotation files and the fixture excerpts), bootstrap intervals against the binomial formula, an exact
permutation p-value by hand, stratified resampling, and the refusals of ``compare``."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cirbench.benchmarks import get_benchmark
from cirbench.benchmarks.base import BenchmarkSplit, Rankings
from cirbench.cli import app
from cirbench.errors import ResultError, ScoringError
from cirbench.query_scores import MEAN, RATE, QueryScores, official_metrics
from cirbench.stats.bootstrap import difference, holm, intervals, paired, permutation_p, resample_counts

FIXTURES = Path(__file__).parent / "fixtures"


# --------------------------------------------------------------------------------------------- per-query = official


def random_rankings(data: BenchmarkSplit, seed: int = 0) -> Rankings:
    """Top-50 lists from each query's pool, the ground truth put at a random place (or left out) and the reference
    sometimes first, so every metric takes many values; CIRR gets random rankings of its groups too."""
    rng = random.Random(seed)
    everything = sorted(data.images)
    top, subset = {}, {}
    for part in data.parts:
        pool = part.gallery or everything
        for q in part.queries:
            candidates = list(q.candidates) if q.candidates else pool
            ranking = rng.sample(candidates, min(50, len(candidates)))
            for gt in q.gt or ((q.target,) if q.target else ()):
                if gt in candidates and rng.random() < 0.6:
                    if gt in ranking:
                        ranking.remove(gt)
                    ranking.insert(rng.randrange(min(12, len(ranking) + 1)), gt)
            if q.reference in candidates and rng.random() < 0.3:
                if q.reference in ranking:
                    ranking.remove(q.reference)
                ranking.insert(0, q.reference)
            top[q.qid] = ranking[:50]
            if q.subset:
                members = [m for m in q.subset if m != q.reference]
                rng.shuffle(members)
                subset[q.qid] = members
    return Rankings(top=top, subset=subset or None)


def assert_official(bench_name: str, data: BenchmarkSplit, seed: int = 0) -> QueryScores:
    bench = get_benchmark(bench_name)
    rankings = random_rankings(data, seed)
    official = bench.metrics(data, rankings)
    scores = bench.per_query(data, rankings)
    again = official_metrics(scores)
    assert set(official) <= set(again), set(official) - set(again)
    for name, value in official.items():
        assert again[name] == value, (name, again[name], value)  # exactly, not within rounding
    assert scores.query_ids == [q.qid for q in data.queries]
    return scores


REAL = [
    ("circo", "circo", "val", {}),
    ("circo", "circo", "val", {"remove_reference": True}),
    ("cirr", "cirr", "val", {}),
    ("cirr", "cirr", "val", {"remove_reference": False}),
    ("cirr", "cirr", "val", {"scoring": "soft"}),
    ("fashioniq", "fashioniq", "val", {}),
    ("genecis", "genecis", "test", {"tasks": ["change_object", "focus_object"]}),
]


@pytest.mark.parametrize(("name", "folder", "split", "options"), REAL, ids=lambda v: str(v))
def test_per_query_means_equal_official_metrics_on_the_real_files(shared_annotations, name, folder, split, options):
    data = get_benchmark(name).load(shared_annotations / folder, split, options)
    scores = assert_official(name, data)
    if name == "fashioniq":  # stratified by category: the averages are means of the three
        assert scores.parts == ["dress", "shirt", "toptee"]
        assert scores.rules["avg_R@10"].of == ("dress_R@10", "shirt_R@10", "toptee_R@10")
    if name == "cirr":
        assert scores.rules["Avg"].of == ("R@5", "Rsubset@1") and len(scores.query_ids) == 4181


EXCERPTS = [
    ("circo", "val", {}),
    ("cirr", "val", {}),
    ("fashioniq", "val", {}),
    ("genecis", "test", {"tasks": ["focus_object"]}),
]


@pytest.mark.parametrize(("name", "split", "options"), EXCERPTS, ids=lambda v: str(v))
def test_per_query_means_equal_official_metrics_on_the_excerpts(name, split, options):
    data = get_benchmark(name).load(FIXTURES / name, split, options)
    for seed in range(3):
        assert_official(name, data, seed)


def test_per_query_means_equal_official_metrics_on_shapes(tmp_path):
    bench = get_benchmark("shapes")
    data = bench.load(tmp_path, "test", {"queries_per_style": 60, "renders": 1})
    scores = assert_official("shapes", data)
    assert scores.parts == ["imperative", "descriptive"] or set(scores.parts) == {"imperative", "descriptive"}
    assert scores.rules["mAP@10"] == MEAN and scores.rules["R@1"] == RATE


def test_a_split_without_labels_has_no_per_query_metrics(shared_annotations):
    data = get_benchmark("circo").load(shared_annotations / "circo", "test")
    with pytest.raises(ScoringError, match="no public ground truth"):
        get_benchmark("circo").per_query(data, Rankings(top={}))


# --------------------------------------------------------------------------------------------- known answers


def hits(n: int, ones: int, seed: int = 0, strata: list[str] | None = None) -> QueryScores:
    values = np.zeros(n)
    values[np.random.default_rng(seed).permutation(n)[:ones]] = 1
    scores = QueryScores([str(i) for i in range(n)], strata or ["all"] * n)
    scores.add("R@1", values)
    return scores


def test_interval_of_a_hit_vector_agrees_with_the_binomial_normal_approximation():
    for n, p in ((4181, 0.3), (800, 0.1), (220, 0.5)):
        ones = round(n * p)
        scores = hits(n, ones)
        found = intervals(scores, official_metrics(scores), resamples=10_000, seed=1)["R@1"]
        expected = 100 * 1.959964 * math.sqrt(p * (1 - p) / n)
        assert abs(found.half_width - expected) / expected < 0.10, (n, p, found.half_width, expected)
        assert found.low < found.value == 100 * ones / n < found.high


def test_permutation_p_value_of_a_tiny_pair_equals_exact_enumeration():
    """Differences (1, 1, 1, -1, 0): the statistic is the sum of 4 signed ones; |sum| >= 2 in 10 of 16 flips."""
    diff = QueryScores(list("abcde"), ["all"] * 5)
    diff.add("R@1", [1, 1, 1, -1, 0])
    assert permutation_p(diff, "R@1") == 10 / 16
    # the same enumeration written out
    observed = 2
    extreme = sum(abs(sum(s)) >= observed for s in itertools.product((1, -1), repeat=4))
    assert extreme == 10
    # and for AP-like values (CIRCO's mean rule)
    diff = QueryScores(list("abc"), ["all"] * 3)
    diff.add("mAP@10", [0.5, 0.25, -0.125], MEAN)
    flips = [abs(0.5 * a + 0.25 * b - 0.125 * c) for a, b, c in itertools.product((1, -1), repeat=3)]
    assert permutation_p(diff, "mAP@10") == sum(f >= 0.625 - 1e-12 for f in flips) / 8 == 4 / 8  # +-(0.875, 0.625)


def test_identical_runs_differ_by_zero_with_p_one():
    scores = hits(500, 123)
    interval = paired(scores, scores, resamples=2000)["R@1"]
    assert interval.low == interval.high == 0.0
    assert permutation_p(difference(scores, scores), "R@1") == 1.0


def test_a_real_difference_is_found_and_holm_adjusts():
    a, b = hits(2000, 900, seed=1), hits(2000, 700, seed=2)
    assert permutation_p(difference(a, b), "R@1", permutations=2000) < 0.001
    assert paired(a, b, resamples=2000)["R@1"].low > 0
    assert holm({"x": 0.01, "y": 0.04, "z": 0.03}) == pytest.approx({"x": 0.03, "y": 0.06, "z": 0.06})


def test_stratified_resampling_keeps_every_part_size():
    strata = ["dress"] * 7 + ["shirt"] * 3 + ["toptee"] * 11
    for counts in resample_counts(strata, 2500, np.random.default_rng(0)):
        labels = np.asarray(strata)
        for part, size in (("dress", 7), ("shirt", 3), ("toptee", 11)):
            assert (counts[:, labels == part].sum(axis=1) == size).all()
        assert counts.shape[1] == 21


def test_averaged_metrics_resample_within_their_parts():
    """A part that always hits and one that never does: every resample's average is exactly 50."""
    scores = QueryScores([str(i) for i in range(30)], ["a"] * 10 + ["b"] * 20)
    scores.add_part("a_R@1", "a", [1] * 10)
    scores.add_part("b_R@1", "b", [0] * 20)
    scores.derive("avg_R@1", "a_R@1", "b_R@1")
    found = intervals(scores, official_metrics(scores), resamples=500)["avg_R@1"]
    assert found.low == found.high == found.value == 50.0


# --------------------------------------------------------------------------------------------- runs and the CLI


@pytest.fixture(scope="module")
def shapes_runs(tmp_path_factory):
    """Three small shapes runs: image+text and image-only, and image+text keeping the reference."""
    from cirbench.evaluation import EvalSettings, RunRequest, evaluate, keep_splits, resolve

    results = tmp_path_factory.mktemp("results")
    small = {"queries_per_style": 40, "renders": 1}
    settings = EvalSettings(results_dir=results)
    keys = {}
    with keep_splits():
        for label, method, options in (
            ("sum", "image+text", small),
            ("image", "image-only", small),
            ("keep", "image+text", {**small, "remove_reference": False}),
        ):
            request = RunRequest(method, "shapes", "shapes-clip:v1", "test", protocol_options=options)
            keys[label] = evaluate(resolve(request), settings).result.run_key
    return results, keys


def run_cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    return result


def test_stats_command_intervals_contain_the_recorded_metrics(shapes_runs):
    results, keys = shapes_runs
    out = run_cli("stats", keys["sum"], "--results-dir", str(results), "--json", "--resamples", "2000")
    assert out.exit_code == 0, out.output
    record = json.loads(out.output)
    assert record["n_queries"] == 80 and record["resamples"] == 2000
    recorded = json.loads(next(results.rglob(f"*{keys['sum']}.json")).read_text())["metrics"]
    for name, value in recorded.items():
        interval = record["metrics"][name]
        assert interval["value"] == value
        assert interval["low"] <= value <= interval["high"]


def test_compare_identical_runs_and_refusals(shapes_runs):
    results, keys = shapes_runs
    same = run_cli("compare", keys["sum"], keys["sum"], "--results-dir", str(results), "--json", "--resamples", "500")
    assert same.exit_code == 0, same.output
    rows = json.loads(same.output)["metrics"]
    assert all(r["difference"] == 0 and r["low"] == r["high"] == 0 and r["p"] == 1.0 for r in rows.values())

    differ = run_cli("compare", keys["sum"], keys["image"], "--results-dir", str(results), "--json")
    rows = json.loads(differ.output)["metrics"]
    assert rows["mAP@10"]["difference"] > 0 and rows["mAP@10"]["p_holm"] >= rows["mAP@10"]["p"]

    refused = run_cli("compare", keys["sum"], keys["keep"], "--results-dir", str(results))
    assert refused.exit_code == 2
    assert "different protocols (remove_reference=True against remove_reference=False)" in refused.output
    assert len(refused.output.strip().splitlines()) == 1


def test_a_run_whose_annotations_changed_is_refused(shapes_runs, tmp_path):
    from cirbench.results import find_result, read_result
    from cirbench.stats.runs import run_scores

    results, keys = shapes_runs
    result = find_result(results, keys["sum"])
    result.metrics["R@1"] += 1.0
    with pytest.raises(ResultError, match="changed since the run"):
        run_scores(result)
    no_labels = read_result(result.path)
    no_labels.metrics = {}
    with pytest.raises(ResultError, match="no local labels"):
        run_scores(no_labels)


def test_inspect_lists_queries_worst_first_and_draws_the_grid(shapes_runs, tmp_path):
    results, keys = shapes_runs
    csv, grid = tmp_path / "q.csv", tmp_path / "grid.png"
    out = run_cli("inspect", keys["image"], "--results-dir", str(results), "--csv", str(csv), "--grid", str(grid))
    assert out.exit_code == 0, out.output
    import pandas as pd

    frame = pd.read_csv(csv)
    assert len(frame) == 80 and list(frame["mAP@10"]) == sorted(frame["mAP@10"])
    assert {"query_id", "reference", "text", "targets", "first_target_rank"} <= set(frame.columns)
    from PIL import Image

    with Image.open(grid) as image:
        assert image.size[0] > 200 and image.size[1] > 200


# --------------------------------------------------------------------------------------------- the domain benchmarks


def positive_rankings(data: BenchmarkSplit, seed: int = 0):
    """Full rankings with every positive at a random depth (0..300), as the engine reports them."""
    from cirbench.benchmarks.ranks import RankingsWithPositives

    rng = random.Random(seed)
    positives = {}
    for q in data.queries:
        n = len(q.gt or ())
        positives[q.qid] = sorted(rng.sample(range(300 + n), n)) if n and rng.random() < 0.8 else []
        if n and not positives[q.qid]:
            positives[q.qid] = sorted(rng.sample(range(5000, 6000), n))
    return RankingsWithPositives(top={q.qid: [] for q in data.queries}, positive_ranks=positives)


@pytest.mark.parametrize("name", ["pic2word-imagenet-r", "freedom-imagenet-r"])
def test_per_query_means_equal_official_metrics_on_the_domain_benchmarks(shared_annotations, name):
    bench = get_benchmark(name)
    data = bench.load(shared_annotations / "imagenet-r")
    rankings = positive_rankings(data)
    official = bench.metrics(data, rankings)
    again = official_metrics(bench.per_query(data, rankings))
    assert set(official) <= set(again)
    for metric, value in official.items():
        assert again[metric] == value, (metric, again[metric], value)


def test_per_query_means_equal_official_metrics_on_the_imagenet_r_excerpt():
    bench = get_benchmark("pic2word-imagenet-r")
    data = bench.load(FIXTURES / "imagenet-r")
    rankings = positive_rankings(data, seed=3)
    official = bench.metrics(data, rankings)
    again = official_metrics(bench.per_query(data, rankings))
    assert official and all(again[m] == v for m, v in official.items())


def test_per_query_means_equal_official_metrics_on_coco_objects(tmp_path):
    from tests.test_coco_objects import make_coco

    bench = get_benchmark("pic2word-coco")
    data = bench.load(make_coco(tmp_path / "coco"))
    for seed in range(4):
        rankings = positive_rankings(data, seed)
        official = bench.metrics(data, rankings)
        again = official_metrics(bench.per_query(data, rankings))
        assert official and all(again[m] == v for m, v in official.items())


def test_sensitivity_reevaluates_each_choice_papers_make_differently(tmp_path):
    """image+text on a small shapes split: one variant (keeping the reference); its Δ is the difference of the two
    recorded metrics and its paired interval and p come from the same queries. Caption joining is not tried: shapes
    queries have one caption."""
    from cirbench.evaluation import EvalSettings, RunRequest
    from cirbench.stats.sensitivity import markdown, sensitivity

    small = {"queries_per_style": 40, "renders": 1}
    request = RunRequest("image+text", "shapes", "shapes-clip:v2", "test", protocol_options=small)
    base, rows = sensitivity(request, EvalSettings(results_dir=tmp_path / "results"), resamples=1000)
    (row,) = rows
    assert row.label == "protocol remove_reference=False"
    variant = RunRequest(
        "image+text", "shapes", "shapes-clip:v2", "test", protocol_options={**small, "remove_reference": False}
    )
    from cirbench.evaluation import evaluate, resolve

    kept = evaluate(resolve(variant), EvalSettings(results_dir=tmp_path / "results")).result
    assert kept.run_key == row.run_key and row.delta == pytest.approx(kept.metrics["mAP@10"] - base.metrics["mAP@10"])
    assert row.low <= row.delta <= row.high and 0 < row.p <= 1
    table = markdown(base, rows, "mAP@10")
    assert f"| default | {base.metrics['mAP@10']:.2f} |" in table and "protocol remove_reference=False" in table
