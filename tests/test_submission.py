"""Server submissions: structure of the official demo files reproduced, and every validation failure path."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cirbench import submission as S
from cirbench.benchmarks import get_benchmark
from cirbench.benchmarks.circo import TEST_QUERIES as CIRCO_TEST_QUERIES
from cirbench.benchmarks.circo import validate_circo, write_circo
from cirbench.benchmarks.cirr import MAX_BYTES as CIRR_MAX_BYTES
from cirbench.benchmarks.cirr import TEST_QUERIES as CIRR_TEST_QUERIES
from cirbench.benchmarks.cirr import CIRRTestSet, cirr_files, validate_cirr, write_cirr
from cirbench.benchmarks.fashioniq import pred_records
from cirbench.benchmarks.server_files import check_size
from cirbench.errors import SubmissionError
from cirbench.io import atomic_write_json, atomic_write_json_gz
from cirbench.metrics import FASHIONIQ_CATEGORIES
from cirbench.results import find_result, rankings_path, result_path

EXCERPTS = Path(__file__).parent / "fixtures" / "submission"


def _read(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------- test data


def _cirr_from(cap: list[dict], split_names, recall_path: Path, subset_path: Path):
    """(test set, demo recall, demo subset, fake rankings made from the demo's own lists)."""
    test = CIRRTestSet(
        query_ids=[str(r["pairid"]) for r in cap],
        references={str(r["pairid"]): r["reference"] for r in cap},
        members={str(r["pairid"]): tuple(r["img_set"]["members"]) for r in cap},
        gallery=frozenset(split_names),
    )
    recall, subset = _read(recall_path), _read(subset_path)
    top = {q: list(recall[q]) for q in test.query_ids}
    # The stored subset ranking holds all 5 members other than the reference; the demo's 3 come first.
    sub = {
        q: subset[q] + [m for m in test.members[q] if m != test.references[q] and m not in subset[q]]
        for q in test.query_ids
    }
    return test, recall, subset, {"top": top, "subset": sub, "scores": {q: [0.5] * 50 for q in top}}


@pytest.fixture
def cirr_excerpt():
    cap = _read(EXCERPTS / "cirr_cap.rc2.test1.excerpt.json")
    split = _read(EXCERPTS / "cirr_split.rc2.test1.excerpt.json")
    return _cirr_from(
        cap,
        split,
        EXCERPTS / "cirr_test1_pred_ranks_recall.excerpt.json",
        EXCERPTS / "cirr_test1_pred_ranks_recall_subset.excerpt.json",
    )


@pytest.fixture
def circo_excerpt():
    query_ids = [str(r["id"]) for r in _read(EXCERPTS / "circo_test.excerpt.json")]
    example = _read(EXCERPTS / "circo_submission_test.excerpt.json")
    return query_ids, example, {"top": {q: [str(i) for i in ids] for q, ids in example.items()}}


def _result(results_dir: Path, bench: str, split: str, rankings: dict, key: str = "5e1f00c0ffee"):
    """A result file + rankings as cirbench 0.1 (schema 1) wrote them, read back through the current reader."""
    record = {
        "schema_version": 1,
        "run_key": key,
        "created_at": "2026-11-26T12:00:00+0000",
        "source": "run",
        "method": {"name": "image-only", "variant": ""},
        "backbone": {"id": "ViT-B-32:openai"},
        "benchmark": {"name": bench, "split": split, "protocol": {}},
        "metrics": {},
        "n_queries": len(rankings["top"]),
        "skipped": {
            "images_missing": 0,
            "queries_dropped": 0,
            "gallery_images_dropped": 0,
            "first_missing": [],
        },
    }
    path = result_path(results_dir, bench, split, "image-only", "ViT-B-32:openai", key)
    atomic_write_json_gz(rankings_path(path), rankings)
    atomic_write_json(
        path,
        {**record, "backbone": {"id": "ViT-B-32:openai", "weights_id": "w"}, "rankings_file": rankings_path(path).name},
    )
    return find_result(results_dir, key)


def _assert_cirr_structure(ours: dict, demo: dict, k: int, metric: str) -> None:
    assert list(ours)[:2] == ["version", "metric"] and ours["version"] == "rc2" and ours["metric"] == metric
    assert list(ours) == list(demo)  # same keys, same order
    for q in list(ours)[2:]:
        assert isinstance(q, str) and len(ours[q]) == k and all(isinstance(n, str) for n in ours[q])


# --------------------------------------------------------------------------------------------- round trips


def test_cirr_round_trip_excerpt(cirr_excerpt, tmp_path):
    test, recall, subset, rankings = cirr_excerpt
    paths = write_cirr(rankings, tmp_path, "run", test)
    ours_recall, ours_subset = (_read(p) for p in paths)
    _assert_cirr_structure(ours_recall, recall, 50, "recall")
    _assert_cirr_structure(ours_subset, subset, 3, "recall_subset")
    assert ours_recall == recall and ours_subset == subset
    assert paths[0].read_bytes() == (EXCERPTS / "cirr_test1_pred_ranks_recall.excerpt.json").read_bytes()
    assert paths[1].read_bytes() == (EXCERPTS / "cirr_test1_pred_ranks_recall_subset.excerpt.json").read_bytes()


def test_cirr_round_trip_full_demo(shared_annotations, tmp_path):
    """The whole pipeline (result file -> rankings -> validated files) reproduces the authors' demo files."""
    cirr = shared_annotations / "cirr"
    demo_recall = cirr / "demo_files" / "test1_pred_ranks_recall.json"
    demo_subset = cirr / "demo_files" / "test1_pred_ranks_recall_subset.json"
    cap = _read(cirr / "captions" / "cap.rc2.test1.json")
    split = _read(cirr / "image_splits" / "split.rc2.test1.json")
    test, recall, subset, rankings = _cirr_from(cap, split, demo_recall, demo_subset)
    assert len(test.query_ids) == CIRR_TEST_QUERIES
    result = _result(tmp_path / "results", "cirr", "test1", rankings)
    paths, notes = S.submit(result, "cirr", tmp_path / "out", root=cirr)
    assert not notes
    _assert_cirr_structure(_read(paths[0]), recall, 50, "recall")
    _assert_cirr_structure(_read(paths[1]), subset, 3, "recall_subset")
    assert paths[0].read_bytes() == demo_recall.read_bytes()
    assert paths[1].read_bytes() == demo_subset.read_bytes()
    assert paths[0].stat().st_size < CIRR_MAX_BYTES


def test_circo_round_trip_excerpt(circo_excerpt, tmp_path):
    query_ids, example, rankings = circo_excerpt
    (path,) = write_circo(rankings, tmp_path, "run", query_ids)
    ours = _read(path)
    assert list(ours) == list(example) and all(isinstance(i, int) for ids in ours.values() for i in ids)
    assert path.read_bytes() == (EXCERPTS / "circo_submission_test.excerpt.json").read_bytes()


def test_circo_round_trip_full_example(shared_annotations, tmp_path):
    circo = shared_annotations / "circo"
    example_path = circo / "submission_examples" / "submission_test.json"
    example = _read(example_path)
    rankings = {"top": {q: [str(i) for i in ids] for q, ids in example.items()}}
    result = _result(tmp_path / "results", "circo", "test", rankings)
    paths, notes = S.submit(result, "circo", tmp_path / "out", root=circo)
    assert any("gallery ids not checked" in n for n in notes)  # no COCO image info in ../shared
    ours = _read(paths[0])
    assert list(ours) == [str(i) for i in range(CIRCO_TEST_QUERIES)] == list(example)
    assert all(len(v) == 50 and all(isinstance(i, int) for i in v) for v in ours.values())
    assert paths[0].read_bytes() == example_path.read_bytes()


def test_submit_cli(shared_annotations, tmp_path):
    from cirbench.cli import app

    cirr = shared_annotations / "cirr"
    cap = _read(cirr / "captions" / "cap.rc2.test1.json")
    _, _, _, rankings = _cirr_from(
        cap,
        _read(cirr / "image_splits" / "split.rc2.test1.json"),
        cirr / "demo_files" / "test1_pred_ranks_recall.json",
        cirr / "demo_files" / "test1_pred_ranks_recall_subset.json",
    )
    results = tmp_path / "results"
    _result(results, "cirr", "test1", rankings, key="abcdef012345")
    _result(results, "cirr", "val", rankings, key="0123456789ab")
    runner = CliRunner()
    base = [
        "submit",
        "--benchmark",
        "cirr",
        "--results-dir",
        str(results),
        "--out-dir",
        str(tmp_path / "sub"),
    ]
    res = runner.invoke(app, [*base, "--run", "abcdef", "--root", str(cirr)])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "sub" / "cirr").glob("*.json"))) == 2
    res = runner.invoke(app, [*base, "--run", "012345"])
    assert res.exit_code == 2 and "val" in res.output and "test1" in res.output and "Traceback" not in res.output


def test_submit_without_root_checks_the_query_count(cirr_excerpt, tmp_path):
    *_, rankings = cirr_excerpt
    result = _result(tmp_path / "results", "cirr", "test1", rankings)
    with pytest.raises(SubmissionError, match="6 queries, the test split has 4148"):
        S.submit(result, "cirr", tmp_path / "out")


# --------------------------------------------------------------------------------------------- failures


def _cirr_validate(test, recall, subset, **kw):
    validate_cirr(
        recall,
        subset,
        query_ids=test.query_ids,
        references=test.references,
        members=test.members,
        gallery=test.gallery,
        **kw,
    )


def test_cirr_valid_excerpt_passes(cirr_excerpt):
    test, recall, subset, _ = cirr_excerpt
    _cirr_validate(test, recall, subset)


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda t, r, s: r.pop("12064"), "missing test queries: 12064"),
        (lambda t, r, s: r.__setitem__("99999", r["12063"]), "unknown query ids: 99999"),
        (lambda t, r, s: r["12063"].__setitem__(1, r["12063"][0]), "duplicate ids: 12063"),
        (lambda t, r, s: r["12065"].pop(), "exactly 50 ids: 12065 (49)"),
        (lambda t, r, s: r["12063"].__setitem__(49, t.references["12063"]), "reference image: 12063"),
        (lambda t, r, s: r["12066"].__setitem__(0, "test1-0-0-img9"), "not in the test gallery: 12066"),
        (lambda t, r, s: r.__setitem__("metric", "recall_subset"), "header must be"),
        (lambda t, r, s: r["12063"].__setitem__(0, 7), "lists of image names"),
    ],
)
def test_cirr_recall_failures(cirr_excerpt, break_it, message):
    test, recall, subset, _ = cirr_excerpt
    recall = copy.deepcopy(recall)
    break_it(test, recall, subset)
    with pytest.raises(SubmissionError, match="CIRR recall file not written") as err:
        _cirr_validate(test, recall, subset)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda t, s: s.pop("12070"), "missing test queries: 12070"),
        (lambda t, s: s["12063"].__setitem__(2, s["12063"][0]), "duplicate ids: 12063"),
        (lambda t, s: s["12064"].append(s["12064"][0] + "x"), "exactly 3 ids: 12064 (4)"),
        (lambda t, s: s["12065"].__setitem__(0, t.references["12065"]), "reference image: 12065"),
        # a gallery image that is not one of the query's group members
        (lambda t, s: s["12066"].__setitem__(0, "test1-38-2-img1"), "not within the group members"),
    ],
)
def test_cirr_subset_failures(cirr_excerpt, break_it, message):
    test, recall, subset, _ = cirr_excerpt
    subset = copy.deepcopy(subset)
    break_it(test, subset)
    with pytest.raises(SubmissionError, match="CIRR recall_subset file not written") as err:
        _cirr_validate(test, recall, subset)
    assert message in str(err.value)


def test_cirr_nothing_written_on_failure(cirr_excerpt, tmp_path):
    test, _, _, rankings = cirr_excerpt
    rankings = copy.deepcopy(rankings)
    rankings["subset"]["12063"][0] = test.references["12063"]  # only the second file is bad
    with pytest.raises(SubmissionError, match="reference image"):
        write_cirr(rankings, tmp_path, "run", test)
    assert not list(tmp_path.iterdir())


def test_cirr_over_size(cirr_excerpt, tmp_path):
    test, _, _, rankings = cirr_excerpt
    with pytest.raises(SubmissionError, match="over the server limit of 1,000 bytes"):
        write_cirr(rankings, tmp_path, "run", test, max_bytes=1000)
    assert not list(tmp_path.iterdir())
    with pytest.raises(SubmissionError, match="over the server limit"):
        check_size(b"x" * (CIRR_MAX_BYTES + 1), CIRR_MAX_BYTES, "recall.json")


def test_cirr_needs_subset_rankings(cirr_excerpt):
    *_, rankings = cirr_excerpt
    with pytest.raises(SubmissionError, match="no CIRR subset rankings"):
        cirr_files({"top": rankings["top"]})


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda s: s.pop("2"), "missing test queries: 2"),
        (lambda s: s["0"].__setitem__(5, s["0"][4]), "duplicate ids: 0"),
        (lambda s: s.__setitem__("1", s["1"][:10]), "exactly 50 ids: 1 (10)"),
        (lambda s: s["3"].__setitem__(0, "544864"), "integer COCO ids: 3"),
        (lambda s: s["0"].__setitem__(0, 1), "not in the test gallery: 0: 1"),
    ],
)
def test_circo_failures(circo_excerpt, break_it, message):
    query_ids, example, _ = circo_excerpt
    sub = copy.deepcopy(example)
    break_it(sub)
    gallery = {str(i) for ids in example.values() for i in ids}
    with pytest.raises(SubmissionError, match="CIRCO file not written") as err:
        validate_circo(sub, query_ids=query_ids, gallery=gallery)
    assert message in str(err.value)


@pytest.mark.parametrize("bench", ["cirr", "circo"])
def test_val_run_refused(bench, cirr_excerpt, circo_excerpt, tmp_path):
    rankings = cirr_excerpt[3] if bench == "cirr" else circo_excerpt[2]
    result = _result(tmp_path / "results", bench, "val", rankings)
    with pytest.raises(SubmissionError, match=f"{bench} val result; the {bench.upper()} test server needs") as err:
        S.submit(result, bench, tmp_path / "out")
    assert "never be uploaded" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_wrong_benchmark_and_dropped_queries_refused(cirr_excerpt, tmp_path):
    *_, rankings = cirr_excerpt
    result = _result(tmp_path / "results", "cirr", "test1", rankings)
    cirr = get_benchmark("cirr")
    with pytest.raises(SubmissionError, match="is a cirr result, not circo"):
        S.check_run(result, get_benchmark("circo"))
    result.skipped.queries_dropped = 3
    with pytest.raises(SubmissionError, match="dropped 3 queries"):
        S.check_run(result, cirr)
    result.benchmark.split = "test"  # SEARLE's alias for test1 is accepted
    result.skipped.queries_dropped = 0
    S.check_run(result, cirr)
    result.benchmark.options["remove_reference"] = False
    with pytest.raises(SubmissionError, match="remove_reference=False; the CIRR server protocol expects"):
        S.check_run(result, cirr)


# --------------------------------------------------------------------------------------------- FashionIQ


def _fiq_root(tmp_path: Path) -> tuple[Path, list[str], list[dict]]:
    gallery = [f"B{i:09d}" for i in range(60)]
    records = [
        {"candidate": gallery[0], "captions": [" yello and more flowing", "short and black"]},
        {"candidate": gallery[1], "captions": ["is shiny", "fit and flare"]},
    ]
    (tmp_path / "captions").mkdir(parents=True)
    (tmp_path / "image_splits").mkdir()
    (tmp_path / "captions" / "cap.dress.test.json").write_text(json.dumps(records))
    (tmp_path / "image_splits" / "split.dress.test.json").write_text(json.dumps(gallery))
    return tmp_path, gallery, records


def test_fashioniq_starter_kit_files(tmp_path):
    root, gallery, records = _fiq_root(tmp_path / "fiq")
    rankings = {"top": {"dress/0": gallery[:50], "dress/1": gallery[10:60]}}
    result = _result(tmp_path / "results", "fashioniq", "test", rankings)
    result.benchmark.options = {"categories": ["dress"]}
    paths, notes = S.submit(result, "fashioniq", tmp_path / "out", root=root)
    assert [p.name for p in paths] == ["dress.test.pred.json"]
    assert any("starter-kit" in n for n in notes)
    out = _read(paths[0])
    assert [{k: v for k, v in r.items() if k != "ranking"} for r in out] == records
    assert out[1]["ranking"] == gallery[10:60]
    assert paths[0].read_text().startswith("[\n    {")  # indent=4, as start_kit/eval.py


def test_fashioniq_failures(tmp_path):
    root, gallery, records = _fiq_root(tmp_path / "fiq")
    with pytest.raises(SubmissionError, match="missing test queries: dress/1"):
        pred_records(records, {"top": {"dress/0": gallery[:50]}}, "dress", gallery)
    bad = {"top": {"dress/0": gallery[:49] + ["B999"], "dress/1": gallery[:50]}}
    with pytest.raises(SubmissionError, match="not in the test gallery: dress/0: B999"):
        pred_records(records, bad, "dress", gallery)
    result = _result(tmp_path / "results", "fashioniq", "test", {"top": {}})
    with pytest.raises(SubmissionError, match="pass --root"):
        S.submit(result, "fashioniq", tmp_path / "out")


def test_fashioniq_starter_kit_full_test_split(shared_annotations, tmp_path):
    root = shared_annotations / "fashioniq"
    top = {}
    for cat in FASHIONIQ_CATEGORIES:
        gallery = _read(root / "image_splits" / f"split.{cat}.test.json")
        n = len(_read(root / "captions" / f"cap.{cat}.test.json"))
        top.update({f"{cat}/{i}": gallery[i % 7 : i % 7 + 50] for i in range(n)})
    result = _result(tmp_path / "results", "fashioniq", "test", {"top": top})
    paths, _ = S.submit(result, "fashioniq", tmp_path / "out", root=root)
    assert sorted(p.name for p in paths) == [
        "dress.test.pred.json",
        "shirt.test.pred.json",
        "toptee.test.pred.json",
    ]
    counts = {p.name.split(".")[0]: len(_read(p)) for p in paths}
    assert counts == {"dress": 2024, "shirt": 2038, "toptee": 2056}  # BENCHMARKS.md §3.2
    first = _read(paths[0])[0]
    assert set(first) == {"candidate", "captions", "ranking"} and len(first["ranking"]) == 50


def test_submit_cli_refuses_val_run(cirr_excerpt, tmp_path):
    from cirbench.cli import app

    results = tmp_path / "results"
    _result(results, "cirr", "val", cirr_excerpt[3], key="0123456789ab")
    args = [
        "submit",
        "--benchmark",
        "cirr",
        "--run",
        "0123",
        "--results-dir",
        str(results),
        "--out-dir",
        str(tmp_path / "s"),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "needs a test1 run" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, [*args[:4], "nope", *args[5:]])
    assert res.exit_code == 2 and "no result with run key 'nope'" in res.output
