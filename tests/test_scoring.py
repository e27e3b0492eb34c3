"""Rankings files: official submission formats, id normalisation, coverage checks, CIRCO fixture values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cirbench.benchmarks import get_benchmark
from cirbench.benchmarks.base import Rankings
from cirbench.scoring import check_rankings, load_rankings, load_rankings_file, score

FIXTURES = Path(__file__).parent / "fixtures"

# BENCHMARKS.md §1.3: official example submission_val.json against annotations/val.json, in percent
CIRCO_EXAMPLE = {
    "mAP@5": 0.4861,
    "mAP@10": 0.5178,
    "mAP@25": 0.5400,
    "mAP@50": 0.6020,
    "R@5": 0.9091,
    "R@10": 0.9091,
    "R@25": 1.3636,
    "R@50": 3.6364,
}


def _write(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj))
    return path


def test_circo_official_example_values(shared_annotations: Path) -> None:
    circo = get_benchmark("circo")
    data = circo.load(shared_annotations / "circo", "val")
    rankings = load_rankings(
        get_benchmark("circo"), shared_annotations / "circo/submission_examples/submission_val.json"
    )
    assert all(isinstance(i, str) for ids in rankings.top.values() for i in ids)  # ints -> canonical str
    res = score(circo, data, rankings)
    assert {k: round(res["metrics"][k], 4) for k in CIRCO_EXAMPLE} == CIRCO_EXAMPLE
    assert res["n_queries"] == 220 and res["n_missing"] == 0
    assert res["options"]["remove_reference"] is False


def test_cirr_demo_files_real(shared_annotations: Path) -> None:
    _check_cirr_demo(shared_annotations / "cirr", n=4148)


def test_cirr_demo_files_excerpt() -> None:
    _check_cirr_demo(FIXTURES / "cirr", n=2)


def _check_cirr_demo(root: Path, n: int) -> None:
    cirr = get_benchmark("cirr")
    data = cirr.load(root, "test1")
    demo = root / "demo_files"
    rankings = load_rankings(cirr, demo / "test1_pred_ranks_recall.json", demo / "test1_pred_ranks_recall_subset.json")
    assert len(rankings.top) == n and all(len(v) == 50 for v in rankings.top.values())
    assert all(len(v) == 3 for v in rankings.subset.values())
    assert check_rankings(data, rankings) == []
    with pytest.raises(ValueError, match="no public labels"):
        score(cirr, data, rankings)
    with pytest.raises(ValueError, match="recall_subset"):
        load_rankings_file(demo / "test1_pred_ranks_recall_subset.json", get_benchmark("cirr"), "top")


def test_cirr_server_format_validation(tmp_path: Path) -> None:
    bad = _write(tmp_path / "v.json", {"version": "rc1", "metric": "recall", "12063": []})
    with pytest.raises(ValueError, match="rc2"):
        load_rankings_file(bad, get_benchmark("cirr"))
    bad = _write(tmp_path / "m.json", {"version": "rc2", "metric": "precision", "12063": []})
    with pytest.raises(ValueError, match="recall_subset"):
        load_rankings_file(bad, get_benchmark("cirr"))
    with pytest.raises(ValueError, match="server format circo does not use"):
        load_rankings_file(_write(tmp_path / "c.json", {"version": "rc2", "0": []}), get_benchmark("circo"))
    ok = _write(tmp_path / "ok.json", {"version": "rc2", "metric": "recall", "12063": ["./test1/test1-1-0-img0.png"]})
    assert load_rankings_file(ok, get_benchmark("cirr")) == {"12063": ["test1-1-0-img0"]}


def test_cirr_val_excerpt_scoring(tmp_path: Path) -> None:
    cirr = get_benchmark("cirr")
    data = cirr.load(FIXTURES / "cirr", "val")
    top = {int(q.qid): [q.reference, q.target, *[m for m in q.subset if m != q.target]] for q in data.queries}
    res = score(cirr, data, load_rankings(cirr, _write(tmp_path / "r.json", top)))
    assert res["metrics"]["R@1"] == 100.0 and res["metrics"]["Rsubset@1"] == 100.0


def test_missing_and_unknown_queries(tmp_path: Path) -> None:
    circo = get_benchmark("circo")
    data = circo.load(FIXTURES / "circo", "val")
    q0 = data.queries[0]
    path = _write(tmp_path / "r.json", {"0": [int(q0.target)], "1": [5]})
    rankings = load_rankings(circo, path)
    with pytest.raises(ValueError, match=r"3 of 5 .*queries have no ranking: 2, 3, 4.*allow_missing"):
        score(circo, data, rankings)
    res = score(circo, data, rankings, allow_missing=True)
    assert res["n_missing"] == 3 and res["metrics"]["R@5"] == pytest.approx(100 / 5)
    with pytest.raises(ValueError, match="not in circo val"):
        score(circo, data, Rankings(top={**rankings.top, "999": []}), allow_missing=True)


def test_id_normalisation(tmp_path: Path) -> None:
    assert get_benchmark("circo").normalise_image_id("000000355099") == "355099"
    assert get_benchmark("circo").normalise_image_id(355099) == "355099"
    with pytest.raises(ValueError):
        get_benchmark("circo").normalise_image_id("abc.jpg")
    assert get_benchmark("fashioniq").normalise_image_id("images/B0084Y8XIU.png") == "B0084Y8XIU"
    assert get_benchmark("genecis").normalise_image_id(175364, "change_object/19") == "coco:175364"
    with pytest.raises(ValueError, match="object tasks"):
        get_benchmark("genecis").normalise_image_id(12, "focus_attribute/0")
    assert load_rankings_file(_write(tmp_path / "q.json", {"007": [1]}), get_benchmark("circo")) == {"7": ["1"]}
    dup = tmp_path / "d.json"
    dup.write_text('{"7": [1], "07": [2]}')
    with pytest.raises(ValueError, match="twice"):
        load_rankings_file(dup, get_benchmark("circo"))


def test_circo_duplicates_and_wrong_gallery(tmp_path: Path) -> None:
    circo = get_benchmark("circo")
    data = circo.load(FIXTURES / "circo", "val")
    top = {q.qid: [q.target, q.target] for q in data.queries}
    with pytest.raises(ValueError, match="duplicate"):
        score(circo, data, Rankings(top=top))
    genecis = get_benchmark("genecis")
    gdata = genecis.load(FIXTURES / "genecis", "test", {"tasks": ["focus_object"]})
    with pytest.raises(ValueError, match="not in its gallery"):
        score(genecis, gdata, Rankings(top={q.qid: ["coco:1"] for q in gdata.queries}))
    res = score(genecis, gdata, Rankings(top={q.qid: list(q.candidates) for q in gdata.queries}))
    assert res["metrics"]["focus_object_R@1"] == 100.0 and res["metrics"]["avg_R@1_1tasks"] == 100.0
