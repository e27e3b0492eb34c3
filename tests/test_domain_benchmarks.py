"""Pic2Word ImageNet-R and the FreeDom suite: loaders on generated files in the real layouts (and on the real lists
when ``../shared/annotations`` is there), strict errors, metrics on hand-made rankings, oracle values, the engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from cirbench import metrics_domain as MD
from cirbench.benchmarks import get_benchmark
from cirbench.benchmarks.base import Rankings
from cirbench.benchmarks.ranks import RankingsWithPositives
from cirbench.errors import AnnotationError, ScoringError
from cirbench.evaluation import EvalSettings, RunRequest, evaluate, resolve

FIXTURES = Path(__file__).parent / "fixtures"
EPS = 1e-5

# Two classes: wnid n00000001 is class 2 (photos a, b; cartoon_0, cartoon_1, toy_0), n00000002 is class 7
# (photo c; origami_0). Labels are class_id + 1000 d (cartoon 0, origami 1, toy 2, sculpture 3, real 6).
PHOTOS = [("imgnet/real/n00000001/ILSVRC2012_val_a.JPEG", 2), ("imgnet/real/n00000001/ILSVRC2012_val_b.JPEG", 2)]
PHOTOS += [("imgnet/real/n00000002/ILSVRC2012_val_c.JPEG", 7)]
RENDITIONS = [
    ("imgnet/imagenet-r/n00000001/cartoon_0.jpg", 2),
    ("imgnet/imagenet-r/n00000001/toy_0.jpg", 2002),
    ("imgnet/imagenet-r/n00000002/origami_0.jpg", 1007),
    ("imgnet/imagenet-r/n00000001/cartoon_1.jpg", 2),
]


def write_image(path: Path, index: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 16), ((53 * index) % 256, (97 * index) % 256, (31 * index) % 256)).save(path)


def make_pic2word_imagenet_r(data: Path, images: bool = True) -> Path:
    """Pic2Word's data/ layout: imgnet/ with both lists (trailing space, as upstream) and the images they name."""
    (data / "imgnet").mkdir(parents=True)
    targets = RENDITIONS + [(p, 6000 + c) for p, c in PHOTOS]
    (data / "imgnet" / "imgnet_real_query.txt").write_text("".join(f"{p} {c} \n" for p, c in PHOTOS))
    (data / "imgnet" / "imgnet_targets.txt").write_text("".join(f"{p} {c} \n" for p, c in targets))
    for i, (path, _) in enumerate(targets):
        if images:
            write_image(data / path, i)
    return data


# --------------------------------------------------------------------------------------------- Pic2Word ImageNet-R


def test_pic2word_imagenet_r_loader(tmp_path):
    data = get_benchmark("pic2word-imagenet-r").load(make_pic2word_imagenet_r(tmp_path / "data"))
    assert data.layout == "pic2word" and [p.name for p in data.parts] == ["cartoon", "origami", "toy", "sculpture"]
    assert data.gallery_size == 7 and len(data.queries) == 12  # 3 photos x 4 domains, one shared gallery
    cartoon = {q.qid: q for q in data.parts[0].queries}
    q = cartoon["cartoon/ILSVRC2012_val_a"]
    assert q.texts == ("a cartoon of ",) and q.prompt == "a cartoon of {image}"
    assert set(q.gt) == {RENDITIONS[0][0], RENDITIONS[3][0]}
    assert cartoon["cartoon/ILSVRC2012_val_c"].gt == ()  # class 7 has no cartoon: it still counts, as 0
    assert data.parts[1].queries[0].prompt == "a origami of {image}"  # verbatim, as upstream
    assert data.parts[1].queries[2].gt == (RENDITIONS[2][0],)
    assert not data.parts[0].remove_reference and q.reference in data.parts[0].gallery
    assert data.facts["queries_with_a_positive"] == {"cartoon": 2, "origami": 1, "toy": 2, "sculpture": 0}
    assert data.warnings == [
        "imgnet_real_query.txt has 3 lines; the official file has 10000",
        "imgnet_targets.txt has 7 lines; the official file has 16983",
    ]
    assert data.image_check.bad == []
    only = get_benchmark("pic2word-imagenet-r").load(tmp_path / "data" / "imgnet", options={"domains": "toy"})
    assert only.layout == "lists" and [p.name for p in only.parts] == ["toy"]
    assert only.images[q.reference].path == tmp_path / "data" / q.reference  # root = the imgnet folder itself


def test_pic2word_imagenet_r_metrics_on_hand_made_rankings(tmp_path):
    bench = get_benchmark("pic2word-imagenet-r")
    data = bench.load(make_pic2word_imagenet_r(tmp_path / "data", images=False))
    gallery = data.parts[0].gallery
    c0, toy, ori, c1, pa, pb, pc = gallery
    order = {  # full rankings (7 items) for the cartoon queries; every other domain ranks the gallery as listed
        "cartoon/ILSVRC2012_val_a": [pa, c0, toy, pb, pc, ori, c1],  # positives at ranks 1 and 6
        "cartoon/ILSVRC2012_val_b": [c1, c0, pa, pb, pc, toy, ori],  # ranks 0 and 1
        "cartoon/ILSVRC2012_val_c": [pc, c0, c1, toy, ori, pa, pb],  # no positive
    }
    top = {q.qid: order.get(q.qid, list(gallery)) for q in data.queries}
    m = bench.metrics(data, Rankings(top=top))
    two = 2 + EPS
    assert m["cartoon_R@1"] == pytest.approx(100 * (0 + 1 / two + 0) / 3)
    assert m["cartoon_R@5"] == pytest.approx(100 * (1 / two + 2 / two + 0) / 3)
    assert m["cartoon_R@10"] == pytest.approx(100 * (2 / two + 2 / two) / 3)  # the lists hold the whole gallery
    assert m["cartoon_P@5"] == pytest.approx(100 * (1 / 5 + 2 / 5) / 3)
    # origami (the gallery as listed): only photo c has a positive, at rank 2 -> R@1 0, R@5 1/(1+eps) over 3
    assert m["origami_R@1"] == 0.0 and m["origami_R@5"] == pytest.approx(100 / (1 + EPS) / 3)
    assert m["sculpture_R@200"] == 0.0
    assert m["avg_R@10"] == pytest.approx(sum(m[f"{d}_R@10"] for d in ("cartoon", "origami", "toy", "sculpture")) / 4)
    # A top-2 file tells R@1 but not R@5 (positives beyond the list are unknown): deeper Ks are not reported
    short = bench.metrics(data, Rankings(top={k: v[:2] for k, v in top.items()}))
    assert short["cartoon_R@1"] == m["cartoon_R@1"] and "cartoon_R@5" not in short and "avg_R@5" not in short


def test_pic2word_imagenet_r_bad_files(tmp_path):
    bench = get_benchmark("pic2word-imagenet-r")
    with pytest.raises(AnnotationError, match=r"lists not found: missing .*imgnet_real_query.txt.*imagenet-r.tar"):
        bench.load(tmp_path)
    root = make_pic2word_imagenet_r(tmp_path / "data", images=False)
    targets = root / "imgnet" / "imgnet_targets.txt"
    good = targets.read_text()
    targets.write_text(good.replace("toy_0.jpg 2002", "toy_0.jpg 3002"))  # a toy labelled sculpture
    with pytest.raises(AnnotationError, match=r"imgnet_targets.txt: line 2: label 3002 does not match .*toy_0"):
        bench.load(root)
    targets.write_text(good.replace("origami_0.jpg 1007", "origami_0.jpg 1002"))  # wnid 2 claims class 2
    with pytest.raises(AnnotationError, match="class id 2 and wnid n00000002 disagree"):
        bench.load(root)
    targets.write_text(good.replace("cartoon_0.jpg 2", "cartoon_0.jpg"))
    with pytest.raises(AnnotationError, match=r"line 1: expected '<path> <int label>'"):
        bench.load(root)
    targets.write_text(good.replace("imgnet/imagenet-r/n00000001/cartoon_0.jpg", "../../etc/cartoon_0.jpg"))
    with pytest.raises(AnnotationError, match="does not match"):
        bench.load(root)


def test_pic2word_imagenet_r_real_lists_reach_the_published_oracle(shared_annotations):
    """The real lists give the counts of §A.1 and, ranked perfectly, the ceilings of §A.4 (x100)."""
    bench = get_benchmark("pic2word-imagenet-r")
    data = bench.load(shared_annotations / "imagenet-r")
    assert data.gallery_size == 16_983 and len(data.queries) == 40_000 and not data.warnings
    assert data.facts["queries_with_a_positive"] == {"cartoon": 7650, "origami": 5300, "toy": 7200, "sculpture": 7100}
    assert data.facts["gallery_domains"] == {
        "cartoon": 3726,
        "origami": 550,
        "real": 10000,
        "sculpture": 1196,
        "toy": 1511,
    }
    oracle = RankingsWithPositives(
        top={q.qid: [] for q in data.queries}, positive_ranks={q.qid: list(range(len(q.gt))) for q in data.queries}
    )
    m = bench.metrics(data, oracle)
    expected = {10: (41.36, 50.13, 60.48, 63.75, 53.93), 50: (75.49, 53.00, 72.00, 70.95, 67.86)}
    for k, values in expected.items():
        got = [round(m[f"{d}_R@{k}"], 2) for d in ("cartoon", "origami", "toy", "sculpture", "avg")]
        assert got == list(values)


def test_pic2word_imagenet_r_excerpt_of_the_real_lists_always_runs():
    """An excerpt of the real files (tests/fixtures/imagenet-r, Apache-2.0) loads with its real labels."""
    data = get_benchmark("pic2word-imagenet-r").load(FIXTURES / "imagenet-r")
    assert data.layout == "lists" and data.gallery_size == 18 and len(data.queries) == 6 * 4
    cartoons = {q.extra["class_id"]: len(q.gt) for q in data.parts[0].queries}
    assert cartoons == {506: 1, 739: 5, 28: 0}  # n04147183, n02749479, n02391049 (no renditions)
    assert {q.extra["class_id"]: len(q.gt) for q in data.parts[3].queries} == {506: 2, 739: 0, 28: 0}
    assert data.parts[0].queries[0].reference in data.parts[0].gallery  # the photo is also a gallery item


# --------------------------------------------------------------------------------------------- FreeDom suite


def make_ltll(data: Path) -> Path:
    """FreeDom's LTLL layout: data/ltll/full_files.csv (query = database) with New/Old photos of 2 places."""
    lines = [
        "ltll/New/images/Bridge/n1.jpg New Bridge",
        "ltll/New/images/Tower/n2.jpg New Tower",
        "ltll/Old/images/Bridge/o1.jpg Old Bridge",
        "ltll/Old/images/Bridge/o2.jpg Old Bridge",
        "ltll/Old/images/Tower/o3.jpg Old Tower",
    ]
    (data / "ltll").mkdir(parents=True)
    (data / "ltll" / "full_files.csv").write_text("\n".join(lines))  # no trailing newline, as FreeDom's files
    for i, line in enumerate(lines):
        write_image(data / line.split(" ")[0], i)
    return data


def test_freedom_ltll_loader_and_metrics_by_hand(tmp_path):
    bench = get_benchmark("freedom-ltll")
    data = bench.load(make_ltll(tmp_path / "data"))
    assert [p.name for p in data.parts] == ["Today_to_Archive", "Archive_to_Today"]
    t2a = data.parts[0].queries
    assert [q.texts for q in t2a] == [("Archive",), ("Archive",)]  # the bare target word, no template
    assert t2a[0].gt == ("ltll/Old/images/Bridge/o1.jpg", "ltll/Old/images/Bridge/o2.jpg")
    assert data.gallery_size == 5 and data.image_check.bad == []
    g = {Path(k).stem: k for k in data.parts[0].gallery}
    top = {
        "Today_to_Archive/0": [g[x] for x in ("n1", "o1", "o3", "n2", "o2")],  # positives at 1 and 4
        "Today_to_Archive/1": [g[x] for x in ("o3", "n2", "n1", "o1", "o2")],  # at 0
        "Archive_to_Today/2": [g[x] for x in ("o1", "o2", "n1", "n2", "o3")],  # at 2
        "Archive_to_Today/3": [g[x] for x in ("n1", "o2", "o1", "o3", "n2")],  # at 0
        "Archive_to_Today/4": [g[x] for x in ("o3", "n2", "o1", "o2", "n1")],  # at 1
    }
    m = bench.metrics(data, Rankings(top=top))
    ap_bridge = ((0 / 1 + 1 / 2) / 2 + (1 / 4 + 2 / 5) / 2) / (2 + EPS)  # Radenović AP of ranks [1, 4]
    assert m["Today_to_Archive_mAP"] == pytest.approx(100 * (ap_bridge + 1 / (1 + EPS)) / 2)
    ap2, ap0, ap1 = ((0 / 2 + 1 / 3) / 2) / (1 + EPS), 1 / (1 + EPS), ((0 / 1 + 1 / 2) / 2) / (1 + EPS)
    assert m["Archive_to_Today_mAP"] == pytest.approx(100 * (ap2 + ap0 + ap1) / 3)
    assert m["Today_mAP"] == m["Today_to_Archive_mAP"]  # one target per source
    assert m["avg_mAP"] == pytest.approx((m["Today_to_Archive_mAP"] + m["Archive_to_Today_mAP"]) / 2)
    assert m["Today_to_Archive_R@5"] == pytest.approx(100 * (2 / (2 + EPS) + 1 / (1 + EPS)) / 2)
    assert m["Archive_to_Today_P@5"] == pytest.approx(100 / (1 + EPS))  # min(|G|, 5) = 1 each
    assert bench.leaderboard_columns == ("Today_mAP", "Archive_mAP", "avg_mAP")  # the README's order
    with pytest.raises(ScoringError, match="full ranking"):
        bench.metrics(data, Rankings(top={k: v[:1] for k, v in top.items()}))


def test_freedom_nico_separate_query_and_database_lists(tmp_path):
    root = tmp_path / "data" / "nico"
    root.mkdir(parents=True)
    (root / "query_files.csv").write_text("nico/dim/cat/q1.jpg dim cat\nnico/water/cat/q2.jpg water cat\n")
    db = ["nico/water/cat/d1.jpg water cat", "nico/dim/cat/d2.jpg dim cat", "nico/water/dog/d3.jpg water dog"]
    bench = get_benchmark("freedom-nico")
    with pytest.raises(AnnotationError, match="database list missing: .*database_files.csv"):
        bench.load(root)
    (root / "database_files.csv").write_text("\n".join(db))
    data = bench.load(root)  # root = data/nico itself; paths resolve from data/
    assert data.images["nico/water/cat/d1.jpg"].path == tmp_path / "data" / "nico/water/cat/d1.jpg"
    assert len(data.parts) == 30 and data.gallery_size == 3  # 6 x 5 pairs, most of them empty here
    dim_to_water = next(p for p in data.parts if p.name == "dimlight_to_water")
    (q,) = dim_to_water.queries
    assert (
        q.texts == ("water",)
        and q.gt == ("nico/water/cat/d1.jpg",)
        and "nico/dim/cat/q1.jpg" not in data.parts[0].gallery
    )
    (root / "query_files.csv").write_text("nico/fog/cat/q1.jpg fog cat\n")
    with pytest.raises(AnnotationError, match=r"query_files.csv: line 1: domain 'fog' is not one of autumn, dim"):
        bench.load(root)


def test_freedom_imagenet_r_from_full_files_or_from_pic2word_list(tmp_path):
    bench = get_benchmark("freedom-imagenet-r")
    derived = bench.load(make_pic2word_imagenet_r(tmp_path / "p2w", images=False) / "imgnet")
    assert derived.layout == "pic2word-list" and len(derived.parts) == 20 and len(derived.queries) == 7 * 4
    # FreeDom's set_dataset.py: paths imgnet -> imagenet_r, domain from the label, class name per wnid
    folder = tmp_path / "fd" / "imagenet_r"
    folder.mkdir(parents=True)
    domain = {0: "cartoon", 1: "origami", 2: "toy", 3: "sculpture", 6: "real"}
    lines = [
        f"{p.replace('imgnet', 'imagenet_r')} {domain[c // 1000]} {p.split('/')[2]}"
        for p, c in RENDITIONS + [(p, 6000 + c) for p, c in PHOTOS]
    ]
    (folder / "full_files.csv").write_text("\n".join(lines))
    official = bench.load(tmp_path / "fd")
    assert official.layout == "freedom"
    assert [(q.qid, q.reference, q.texts, q.gt) for q in official.queries] == [
        (q.qid, q.reference, q.texts, q.gt) for q in derived.queries
    ]
    photo_to_cartoon = next(p for p in official.parts if p.name == "photo_to_cartoon")
    assert [len(q.gt) for q in photo_to_cartoon.queries] == [2, 2, 0]
    with pytest.raises(AnnotationError, match="full_files.csv .* or Pic2Word's imgnet_targets.txt"):
        bench.load(tmp_path / "nothing")


def test_freedom_imagenet_r_real_list_reaches_the_published_oracle(shared_annotations):
    """Perfect rankings on the real list give the oracle mAP of §C.3: 68.12 / 91.41 / 98.00 / 94.16 / 93.85, 89.11."""
    bench = get_benchmark("freedom-imagenet-r")
    data = bench.load(shared_annotations / "imagenet-r")
    assert len(data.queries) == 16_983 * 4 and data.gallery_size == 16_983
    oracle = RankingsWithPositives(
        top={q.qid: [] for q in data.queries}, positive_ranks={q.qid: list(range(len(q.gt))) for q in data.queries}
    )
    m = bench.metrics(data, oracle)
    got = {d: round(m[f"{d}_mAP"], 2) for d in ("photo", "cartoon", "origami", "toy", "sculpture", "avg")}
    assert got == {"photo": 68.12, "cartoon": 91.41, "origami": 98.0, "toy": 94.16, "sculpture": 93.85, "avg": 89.11}


# --------------------------------------------------------------------------------------------- through the engine


@pytest.mark.parametrize("method", ["image+text", "fusion-product"])
def test_engine_gives_full_ranking_positions(tmp_path, method):
    """The engine's positive positions equal those read off its own (complete, gallery < 50) rankings."""
    root = make_ltll(tmp_path / "data")
    spec = resolve(RunRequest(method, "freedom-ltll", "cirbench-tiny:random", root=root))
    outcome = evaluate(spec, EvalSettings(results_dir=None))
    rankings = outcome.rankings
    assert isinstance(rankings, RankingsWithPositives)
    data = get_benchmark("freedom-ltll").load(root)
    for q in data.queries:
        ranked = rankings.top[q.qid]
        assert len(ranked) == 5 and rankings.positive_ranks[q.qid] == [i for i, k in enumerate(ranked) if k in q.gt]
    plain = get_benchmark("freedom-ltll").metrics(data, Rankings(top=rankings.top))  # the lists alone
    assert plain == pytest.approx(outcome.result.metrics, abs=1e-6)  # (results keep 6 decimals)


def test_eval_pic2word_imagenet_r_end_to_end(tmp_path):
    root = make_pic2word_imagenet_r(tmp_path / "data")
    spec = resolve(RunRequest("text-only", "pic2word-imagenet-r", "cirbench-tiny:random", root=root))
    result = evaluate(spec, EvalSettings(results_dir=tmp_path / "results")).result
    assert set(result.metrics) == set(get_benchmark("pic2word-imagenet-r").metric_names)
    assert result.benchmark.facts["metric"].startswith("true recall") and result.n_queries == 12
    # text-only: one sentence per domain, so the 3 photos of a domain get the same ranking
    assert result.metrics["sculpture_R@200"] == 0.0 and result.metrics["cartoon_R@10"] == pytest.approx(
        100 * (2 / (2 + EPS) * 2) / 3
    )
    # the stored rankings (whole gallery here) score offline to the same numbers (`cirbench score`)
    from cirbench.io import read_json
    from cirbench.results import rankings_path
    from cirbench.scoring import score

    stored = read_json(rankings_path(result.path))
    bench = get_benchmark("pic2word-imagenet-r")
    offline = score(bench, bench.load(root), Rankings(top=stored["top"]))["metrics"]
    assert offline == pytest.approx(result.metrics, abs=1e-6)


def test_reported_rows_of_the_domain_benchmarks_use_their_metric_names():
    """The published FreeDom-protocol rows of results/reported.yaml name only metrics the benchmarks produce, and a
    full row's average is the mean of its sources."""
    from cirbench import leaderboard as lb

    root = Path(__file__).resolve().parents[1]
    entries = [e for e in lb.load_reported(root / "results" / "reported.yaml") if e.benchmark.startswith("freedom")]
    assert {e.benchmark for e in entries} == {"freedom-imagenet-r", "freedom-minidn", "freedom-nico", "freedom-ltll"}
    for entry in entries:
        bench = get_benchmark(entry.benchmark)
        assert set(entry.metrics) <= set(bench.metric_names) and "avg_mAP" in entry.metrics, entry
        per_source = [v for k, v in entry.metrics.items() if k != "avg_mAP"]
        if len(per_source) == len(bench.domains):  # a full row: AVG = the mean of the sources, all rounded to 2 dp
            assert sum(per_source) / len(per_source) == pytest.approx(entry.metrics["avg_mAP"], abs=0.0101)


def test_skip_missing_keeps_a_missing_positive_in_the_denominator(tmp_path):
    """A positive whose image is missing is left out of the gallery but stays relevant: never retrieved, AP < 1."""
    root = make_ltll(tmp_path / "data")
    (root / "ltll/Old/images/Bridge/o2.jpg").unlink()
    spec = resolve(RunRequest("image-only", "freedom-ltll", "cirbench-tiny:random", root=root))
    outcome = evaluate(spec, EvalSettings(results_dir=None, skip_missing=True))
    skipped = outcome.result.skipped
    assert skipped.images_missing == 1 and skipped.queries_dropped == 1 and skipped.queries_target_missing == 1
    ranks = outcome.rankings.positive_ranks["Today_to_Archive/0"]
    assert len(ranks) == 1  # o1 is ranked; o2 is not in the gallery
    ap = MD.radenovic_ap(ranks, 2)
    assert ap < 0.5 + 1e-9  # at best (1 + 1) / 2 / (2 + 1e-5): half the relevant set is unreachable
