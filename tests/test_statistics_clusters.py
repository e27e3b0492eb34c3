"""Statistics part 2 with known answers: clusters of dependent queries (a closed-form bootstrap variance, the design
effect of identical queries, cluster sign flips by enumeration, ``--cluster none`` = the query-level numbers bit for
bit), the coverage of the small-part intervals by simulation, the capped exact enumeration, the interval display,
``compare``'s primary test and declared family, and ``sensitivity``'s progress and table."""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from cirbench.cli import app
from cirbench.query_scores import MEAN, QueryScores, official_metrics
from cirbench.stats.bootstrap import difference, intervals, paired, permutation_p, resampled
from cirbench.stats.clusters import design_effect, linear_variance, units
from cirbench.stats.display import format_interval
from cirbench.stats.flips import EXACT_BITS, flip_test
from cirbench.stats.small import agresti_coull


def scores_of(values, clusters=None, strata=None, rule=None) -> QueryScores:
    values = np.asarray(values, dtype=float)
    s = QueryScores([str(i) for i in range(len(values))], strata or ["all"] * len(values), clusters=clusters)
    s.add("m", values, *(() if rule is None else (rule,)))
    return s


# --------------------------------------------------------------------------------------------- clusters


def test_cluster_bootstrap_variance_matches_the_closed_form():
    """G equal clusters of k queries: a resample's metric is the mean of G cluster means drawn with replacement, so
    its variance is (1/G) * (1/G) * sum_c (m_c - m)^2 (the between-cluster variance with divisor G, over G)."""
    rng = np.random.default_rng(3)
    groups, k = 40, 5
    values = rng.random(groups * k)
    clusters = [f"c{i // k}" for i in range(groups * k)]
    s = scores_of(values, clusters, rule=MEAN)
    means = values.reshape(groups, k).mean(axis=1)
    closed = float(np.mean((means - means.mean()) ** 2)) / groups  # on the 0-1 scale
    assert linear_variance(s, "m", units(s)) == pytest.approx(closed, rel=1e-12)  # exactly, to rounding
    (draws,) = resampled([s], 20_000, seed=5)
    # Monte-Carlo: the variance of 20,000 draws has a relative standard error of about sqrt(2 / 20,000) = 1 %
    assert np.var(draws["m"] / 100) == pytest.approx(closed, rel=0.04)
    (queries,) = resampled([s], 20_000, seed=5, cluster=False)
    query_closed = float(np.var(values)) / (groups * k)
    assert np.var(queries["m"] / 100) == pytest.approx(query_closed, rel=0.04)


def test_design_effect_of_identical_queries_equals_the_cluster_size():
    rng = np.random.default_rng(0)
    for k in (2, 4, 9):
        per_cluster = (rng.random(60) < 0.3).astype(float)
        s = scores_of(np.repeat(per_cluster, k), [f"set {i // k}" for i in range(60 * k)])
        assert design_effect(s, "m", units(s)) == pytest.approx(k, rel=1e-12)
    independent = scores_of(rng.random(100), [str(i) for i in range(100)])  # singletons: no clusters at all
    assert units(independent) is None and design_effect(independent, "m", None) == 1.0


def test_clusters_are_nested_in_parts_and_averages_keep_their_parts():
    """A reference shared by two parts is one cluster in each: every resample keeps each part non-empty, and an
    average of a part that always hits and one that never does is 50 in every resample."""
    s = QueryScores(
        [str(i) for i in range(12)], ["a"] * 6 + ["b"] * 6, clusters=["r0", "r0", "r1", "r1", "r2", "r2"] * 2
    )
    s.add_part("a_R@1", "a", [1] * 6)
    s.add_part("b_R@1", "b", [0] * 6)
    s.derive("avg_R@1", "a_R@1", "b_R@1")
    found = units(s)
    assert found is not None and found.count == 6 and found.strata == ["a"] * 3 + ["b"] * 3
    (draws,) = resampled([s], 500, seed=0)
    assert (draws["avg_R@1"] == 50.0).all()


def test_cluster_sign_flips_equal_enumeration_by_hand():
    """Three clusters with summed differences (+2, +1, -1) (x 100/6 per query): |T| >= 2 in 6 of 8 flips."""
    diff = scores_of([1, 1, 1, 0, -1, 0], clusters=["x", "x", "y", "y", "z", "z"])
    test = flip_test(diff, "m")
    flips = [abs(2 * a + b - c) for a, b, c in itertools.product((1, -1), repeat=3)]
    assert test.p == sum(f >= 2 for f in flips) / 8 == 0.75
    assert test.exact and test.units == 3 and test.clustered and "3 clusters" in test.method
    assert permutation_p(diff, "m", cluster=False) == 10 / 16  # the query-level test of the same differences


OLD = {  # the query-level numbers of cirbench before clusters existed (the same inputs, seeds and resamples)
    "intervals": {
        "a_R@1": ("0x1.6800000000000p+4", "0x1.32aaaaaaaaaabp+5"),
        "b_R@1": ("0x1.af1c71c71c71cp+5", "0x1.0f2aaaaaaaaaep+6"),
        "mAP@10": ("0x1.13ee4aff8fdb7p+4", "0x1.80748960e3e10p+4"),
        "avg_R@1": ("0x1.4000000000000p+5", "0x1.97ce38e38e391p+5"),
    },
    "paired": {
        "a_R@1": ("-0x1.aaaaaaaaaaaacp+3", "0x1.2555555555556p+3"),
        "b_R@1": ("-0x1.7555555555558p+3", "0x1.2e38e38e38e38p+3"),
        "mAP@10": ("-0x1.2e7014f222801p+2", "0x1.585ea26af73aep+2"),
        "avg_R@1": ("-0x1.29c71c71c71c8p+3", "0x1.8fffffffffff8p+2"),
    },
    "p": {"a_R@1": 0.8913695434855048, "b_R@1": 0.923025658113962, "mAP@10": 0.8790403198933688},
}


def old_toy(seed: int) -> QueryScores:
    rng = np.random.default_rng(seed)
    s = QueryScores([str(i) for i in range(300)], ["a"] * 120 + ["b"] * 180)
    s.add_part("a_R@1", "a", (rng.random(120) < 0.3).astype(float))
    s.add_part("b_R@1", "b", (rng.random(180) < 0.6).astype(float))
    s.add("mAP@10", np.where(rng.random(300) < 0.4, rng.random(300), 0.0), MEAN)
    s.derive("avg_R@1", "a_R@1", "b_R@1")
    s.clusters = [str(i // 4) for i in range(300)]
    return s


def test_cluster_none_gives_the_query_level_numbers_bit_for_bit():
    a, b = old_toy(1), old_toy(2)
    found = intervals(a, official_metrics(a), 3000, 7, cluster=False)
    assert {m: (i.low.hex(), i.high.hex()) for m, i in found.items()} == OLD["intervals"]
    assert all(i.method == "percentile" and i.design_effect == 1.0 for i in found.values())
    pairs = paired(a, b, 3000, 7, cluster=False)
    assert {m: (i.low.hex(), i.high.hex()) for m, i in pairs.items()} == OLD["paired"]
    diff = difference(a, b)
    assert {m: permutation_p(diff, m, 3000, 7, cluster=False) for m in OLD["p"]} == OLD["p"]
    clustered = intervals(a, official_metrics(a), 3000, 7)  # the default uses the clusters: other numbers
    assert clustered["a_R@1"].low != found["a_R@1"].low and clustered["a_R@1"].design_effect != 1.0


# --------------------------------------------------------------------------------------------- small parts


@pytest.mark.parametrize(("n", "rate", "exact"), [(50, 0.05, 0.962), (20, 0.20, 0.956)])
def test_small_part_intervals_cover_by_simulation(n, rate, exact):
    """4,000 seeded samples of n queries at the hit rate; each sample's interval depends only on its hit count, so
    it is computed once per count. The exact coverage (every count weighted by its binomial probability) is
    ``exact``; the Monte-Carlo standard error of 4,000 samples is 0.3 points, so >= 94 % holds with a margin of
    about 6 standard errors. The percentile interval alone stays under 94 % on the same samples."""
    counts = np.random.default_rng(11).binomial(n, rate, size=4000)
    cover, percentile = {}, {}
    for k in np.unique(counts):
        s = scores_of(np.r_[np.ones(k), np.zeros(n - k)])
        i = intervals(s, {"m": 100 * k / n}, 2000, 0)["m"]
        cover[k] = i.low <= 100 * rate <= i.high
        low, high = np.percentile(resampled([s], 2000, 0)[0]["m"], [2.5, 97.5])
        percentile[k] = low <= 100 * rate <= high
    coverage = np.mean([cover[k] for k in counts])
    assert coverage >= 0.94 and abs(coverage - exact) < 0.012, coverage
    assert np.mean([percentile[k] for k in counts]) < 0.935


def test_small_mean_intervals_cover_by_simulation():
    """CIRCO-like per-aspect APs: 20 queries, 30 % with a non-zero AP ~ Beta(2, 3) (true mean 12): 300 seeded
    samples (standard error 1.3 points at 95 %); the capped Wilson-type interval covers (99.7 % in
    perf/stats_coverage.py), the percentile does not (91.7 %)."""
    rng = np.random.default_rng(4)
    hits = 0
    for _ in range(300):
        v = np.where(rng.random(20) < 0.3, rng.beta(2, 3, 20), 0.0)
        i = intervals(scores_of(v, rule=MEAN), {"m": 100 * float(np.mean(v))}, 300, 0)["m"]
        hits += i.low <= 12.0 <= i.high
    assert hits / 300 >= 0.94


def test_agresti_coull_known_values_and_zero_hits():
    # no hit in 50: n~ = 50 + z^2 = 53.8415, p~ = (z^2 / 2) / n~ = 0.035674, half = z sqrt(p~ (1 - p~) / n~) = 0.049542
    low, high = agresti_coull(0.0, 50)
    assert low == 0.0 and high == pytest.approx(0.085216, abs=2e-6)  # reaches above a 5 % hit rate
    s = scores_of(np.zeros(50))
    found = intervals(s, {"m": 0.0}, 500, 0)["m"]
    assert found.method == "agresti-coull" and found.low == 0.0 and found.high == pytest.approx(100 * high)
    big = scores_of((np.arange(4000) % 3 == 0).astype(float))  # 1,334 hits: the percentile stays
    assert intervals(big, official_metrics(big), 500, 0)["m"].method == "percentile"


# --------------------------------------------------------------------------------------------- enumeration, display


def test_exact_enumeration_is_streamed_then_capped():
    """18 equal differences: |T| reaches 18 only when every sign agrees, p = 2 / 2^18, enumerated in blocks of
    2^16. Beyond 2^EXACT_BITS the test samples and says so."""
    diff = scores_of(np.ones(18))
    test = flip_test(diff, "m", permutations=2**18)
    assert test.exact and test.p == 2 / 2**18 and test.flips == 2**18
    many = scores_of(np.ones(EXACT_BITS + 1))
    sampled = flip_test(many, "m", permutations=2 ** (EXACT_BITS + 1))
    assert not sampled.exact and sampled.capped and f"capped at 2^{EXACT_BITS}" in sampled.method
    assert sampled.p < 1e-5


def test_format_interval_writes_asymmetric_intervals_with_their_ends():
    assert format_interval(2.27, 0.45, 4.55, 2) == "2.27 [0.45, 4.55]"  # the example, not "± 2.05"
    assert format_interval(54.32, 52.82, 55.82, 2) == "54.32 ± 1.50"
    assert format_interval(1.0, -0.5, 2.5, 1, signed=True) == "+1.0 ± 1.5"
    assert format_interval(1.0, 0.2, 2.0, 1, signed=True) == "+1.0 [+0.2, +2.0]"
    assert format_interval(float("nan"), 1.0, 2.0, 2) == "[1.00, 2.00]"
    assert format_interval(3.0, float("nan"), float("nan"), 2) == "3.00"


# --------------------------------------------------------------------------------------------- benchmark declarations


def test_cirr_clusters_are_its_image_sets(shared_annotations):
    from cirbench.benchmarks import get_benchmark

    bench = get_benchmark("cirr")
    data = bench.load(shared_annotations / "cirr", "val")
    declared = bench.query_clusters(data)
    assert len(declared) == 4181 and len(set(declared.values())) == 503


def test_the_default_clusters_are_repeated_reference_images():
    from cirbench.benchmarks.base import Benchmark, BenchmarkSplit, Part, Query

    def split(refs):
        queries = [Query(str(i), r, ("t",)) for i, r in enumerate(refs)]
        return BenchmarkSplit("x", "test", [Part("all", queries, None)], {}, {}, [], True)

    assert Benchmark.query_clusters(None, split(["a", "b", "a"])) == {"0": "a", "1": "b", "2": "a"}
    assert Benchmark.query_clusters(None, split(["a", "b", "c"])) is None


# --------------------------------------------------------------------------------------------- the commands


def run_cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def clustered_cirr(tmp_path_factory):
    """The tiny CIRR split with its 4 queries in 2 image sets, and two runs on it (image-only, image+text)."""
    from cirbench.evaluation import EvalSettings, RunRequest, evaluate, resolve
    from tests.cirr_support import make_cirr

    root = make_cirr(tmp_path_factory.mktemp("cirr") / "CIRR")
    captions = root / "cirr" / "captions" / "cap.rc2.val.json"
    records = json.loads(captions.read_text())
    for i, record in enumerate(records):
        record["img_set"]["id"] = i // 2
    captions.write_text(json.dumps(records))
    results = tmp_path_factory.mktemp("results")
    settings = EvalSettings(results_dir=results, device="cpu")
    keys = [
        evaluate(resolve(RunRequest(m, "cirr", "cirbench-tiny:random", "val", root)), settings).result.run_key
        for m in ("image-only", "image+text")
    ]
    return root, results, keys


def test_stats_resamples_image_sets_and_cluster_none_is_query_level(clustered_cirr, one_thread):
    from cirbench.stats.runs import load_run

    root, results, (key, _) = clustered_cirr
    auto = run_cli("stats", key, "--results-dir", results, "--json", "--resamples", "500")
    none = run_cli("stats", key, "--results-dir", results, "--json", "--resamples", "500", "--cluster", "none")
    assert auto.exit_code == 0 and none.exit_code == 0, auto.output + none.output
    auto, none = json.loads(auto.output), json.loads(none.output)
    assert auto["n_clusters"] == 2 and none["n_clusters"] is None
    run = load_run(results, key)
    assert run.scores.clusters == ["set 0", "set 0", "set 1", "set 1"]
    run.scores.clusters = None  # the query-level computation, as before clusters existed
    expected = intervals(run.scores, run.metrics, 500, 0)
    assert {m: (v["low"], v["high"]) for m, v in none["metrics"].items()} == {
        m: (i.low, i.high) for m, i in expected.items()
    }
    refused = run_cli("stats", key, "--results-dir", results, "--cluster", "sets")
    assert refused.exit_code == 2 and "--cluster 'sets'" in refused.output and "auto" in refused.output
    assert len(refused.output.strip().splitlines()) == 1


def test_compare_names_both_methods_the_primary_test_and_the_family(clustered_cirr, one_thread):
    root, results, (a, b) = clustered_cirr
    out = run_cli("compare", a, b, "--results-dir", results, "--resamples", "500")
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "A image-only" in text and "B image+text" in text and "in 2 clusters" in text
    assert "primary: R@1, two-sided paired sign-flip test over whole clusters" in text
    assert (
        "Holm adjusts the headline family (8 metrics: R@1, R@5, R@10, R@50, Rsubset@1, Rsubset@2, Rsubset@3, Avg)"
        in text
    )
    record = json.loads(run_cli("compare", a, b, "--results-dir", results, "--json", "--resamples", "500").output)
    assert record["family"]["name"] == "headline" and record["primary"]["metric"] == "R@1"
    assert record["metrics"]["R@1"]["primary"] and record["n_clusters"] == 2
    everything = json.loads(
        run_cli("compare", a, b, "--results-dir", results, "--json", "--family", "all", "--resamples", "500").output
    )
    assert everything["family"]["metrics"] == list(record["metrics"])  # CIRR's headline family is every metric
    refused = run_cli("compare", a, b, "--results-dir", results, "--family", "some")
    assert refused.exit_code == 2 and "--family 'some': choose headline or all" in refused.output


def test_sensitivity_reports_progress_at_once_and_prints_a_rich_table(clustered_cirr, tmp_path, one_thread):
    from cirbench.evaluation import EvalSettings, RunRequest
    from cirbench.stats.sensitivity import sensitivity

    root, _, _ = clustered_cirr
    heard: list[tuple[float, str]] = []
    start = time.monotonic()
    request = RunRequest("image-only", "cirr", "cirbench-tiny:random", "val", root)
    settings = EvalSettings(results_dir=tmp_path / "results", device="cpu")
    base, rows = sensitivity(
        request, settings, resamples=200, progress=lambda line: heard.append((time.monotonic(), line))
    )
    assert heard[0][0] - start < 2.0 and heard[0][1].startswith("evaluating the default run")
    assert [line for _, line in heard[1:]] == [
        f"[{i}/{len(rows)}] {r.label.split(' (')[0]}" for i, r in enumerate(rows, 1)
    ]
    out = run_cli(
        "sensitivity", "-m", "image-only", "-b", "cirbench-tiny:random", "--benchmark", "cirr", "--root", root,
        "--device", "cpu", "--results-dir", tmp_path / "results", "--resamples", "200",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "sensitivity: evaluating the default run" in out.output and "sensitivity: [1/" in out.output
    assert "┃ variant" in out.output and "| variant |" not in out.output  # a rich table, not raw markdown
