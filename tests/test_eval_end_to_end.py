"""End to end through the CLI: eval -> result file -> score round trip, the cache, reuse, missing images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from cirbench.cli import app
from cirbench.io import read_json
from cirbench.results import iter_results, rankings_path

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def eval_args(root: Path, results: Path, method: str) -> list[str]:
    return [
        "eval",
        "--method",
        method,
        "--backbone",
        "cirbench-tiny:random",
        "--benchmark",
        "cirr",
        "--split",
        "val",
        "--root",
        str(root),
        "--results-dir",
        str(results),
        "--device",
        "cpu",
    ]


def test_eval_writes_result_and_score_reproduces_it(tmp_path, cirr_split):
    root = cirr_split
    results = tmp_path / "results"
    out = run(*eval_args(root, results, "image+text"))
    assert out.exit_code == 0, out.output
    (result,) = list(iter_results(results))
    assert result.n_queries == 4 and result.benchmark.gallery_size == 12
    assert result.benchmark.options["remove_reference"] is True
    assert set(result.metrics) == {"R@1", "R@5", "R@10", "R@50", "Rsubset@1", "Rsubset@2", "Rsubset@3"}
    assert result.skipped.images_missing == 0
    rankings = read_json(rankings_path(result.path))
    for qid, ranked in rankings["top"].items():
        assert len(ranked) == 11 and f"dev-{int(qid) - 100}-0-img{(int(qid) - 100) % 2}" not in ranked
        assert len(rankings["subset"][qid]) == 5
    # The stored rankings, written out in the CIRR server format, score to the same numbers.
    top = tmp_path / "recall.json"
    sub = tmp_path / "recall_subset.json"
    top.write_text(json.dumps({"version": "rc2", "metric": "recall", **rankings["top"]}))
    sub.write_text(json.dumps({"version": "rc2", "metric": "recall_subset", **rankings["subset"]}))
    scored = run(
        "score",
        "--benchmark",
        "cirr",
        "--split",
        "val",
        "--root",
        str(root),
        "--rankings",
        str(top),
        "--subset-rankings",
        str(sub),
        "--json",
    )
    assert scored.exit_code == 0, scored.output
    metrics = json.loads(scored.output)["metrics"]
    assert metrics == pytest.approx(result.metrics, abs=1e-6)


def test_existing_result_is_reused_and_cache_is_shared_across_methods(tmp_path, cirr_split):
    root = cirr_split
    results = tmp_path / "results"
    for method in ("image-only", "text-only", "random"):
        assert run(*eval_args(root, results, method)).exit_code == 0
    by_method = {r.method.name: r for r in iter_results(results)}
    assert by_method["image-only"].timing["gallery_from_cache"] == 0.0
    assert by_method["text-only"].timing["gallery_from_cache"] == 1.0
    assert by_method["random"].timing["gallery_from_cache"] == 1.0
    # image-only never ranks the reference (removed) and is deterministic: a second run reuses the file.
    again = run(*eval_args(root, results, "image-only"))
    assert "reused" in again.output.replace("\n", " ")
    assert len(list(iter_results(results))) == 3
    keys = {r.run_key for r in by_method.values()}
    assert len(keys) == 3


def test_missing_images_fail_clearly_or_are_counted(tmp_path, cirr_split):
    root = cirr_split
    (root / "dev" / "dev-0-0-img0.png").unlink()
    (root / "dev" / "dev-11-0-img1.png").unlink()
    results = tmp_path / "results"
    out = run(*eval_args(root, results, "image-only"))
    assert out.exit_code == 2
    assert "2 of 12 images missing" in out.output and "dev-0-0-img0.png" in out.output
    assert "--skip-missing" in out.output
    out = run(*eval_args(root, results, "image-only"), "--skip-missing")
    assert out.exit_code == 0, out.output
    (result,) = list(iter_results(results))
    assert result.skipped.images_missing == 2
    assert result.skipped.queries_dropped == 1  # query 100's reference is gone
    assert result.n_queries == 3
    check = run("data", "check", "--benchmark", "cirr", "--split", "val", "--root", str(root))
    assert check.exit_code == 1 and "2 of 12 images missing" in check.output


def test_data_check_ok_and_list(tmp_path, cirr_split):
    root = cirr_split
    check = run("data", "check", "--benchmark", "cirr", "--split", "val", "--root", str(root), "--json")
    assert check.exit_code == 0, check.output
    report = json.loads(check.output)
    assert report["n_queries"] == 4 and report["n_missing"] == 0 and report["ok"]
    listing = run("list")
    assert listing.exit_code == 0, listing.output
    for name in ("image+text", "text-only", "cirr", "circo", "fashioniq", "genecis", "ViT-L-14:openai"):
        assert name in listing.output


def test_random_baseline_does_not_depend_on_batch_size(tmp_path, cirr_split):
    root = cirr_split
    rankings = []
    for batch in ("1", "64"):
        results = tmp_path / f"results{batch}"
        assert run(*eval_args(root, results, "random"), "--batch-size", batch).exit_code == 0
        (result,) = list(iter_results(results))
        rankings.append(read_json(rankings_path(result.path))["top"])
    assert rankings[0] == rankings[1]


def test_circo_without_image_info_refuses_to_rank(tmp_path):
    root = tmp_path / "CIRCO"
    (root / "annotations").mkdir(parents=True)
    record = {
        "reference_img_id": 1,
        "target_img_id": 2,
        "relative_caption": "is red",
        "shared_concept": "a cat",
        "gt_img_ids": [2],
        "id": 0,
        "semantic_aspects": [],
    }
    (root / "annotations" / "val.json").write_text(json.dumps([record]))
    images = root / "COCO2017_unlabeled" / "unlabeled2017"
    images.mkdir(parents=True)
    for i in (1, 2):
        Image.new("RGB", (8, 8)).save(images / f"{i:012d}.jpg")
    out = run(
        "eval",
        "--method",
        "image-only",
        "--backbone",
        "cirbench-tiny:random",
        "--benchmark",
        "circo",
        "--split",
        "val",
        "--root",
        str(root),
        "--results-dir",
        str(tmp_path / "r"),
        "--device",
        "cpu",
    )
    assert out.exit_code == 2 and "image_info_unlabeled2017.json" in out.output
    assert not list(iter_results(tmp_path / "r"))
    check = run("data", "check", "--benchmark", "circo", "--split", "val", "--root", str(root))
    assert check.exit_code == 1 and "gallery is unknown" in check.output


def test_skip_missing_counts_queries_whose_target_is_gone(tmp_path, cirr_split):
    root = cirr_split
    (root / "dev" / "dev-2-0-img0.png").unlink()  # the target of query 100 (members[2] of group 0)
    results = tmp_path / "results"
    assert run(*eval_args(root, results, "image-only"), "--skip-missing").exit_code == 0
    (result,) = list(iter_results(results))
    assert result.skipped.queries_target_missing == 1
    assert result.skipped.queries_dropped == 1  # query 102 has dev-2 as its reference
    first_key = result.run_key
    Image.new("RGB", (48, 40), (1, 2, 3)).save(root / "dev" / "dev-2-0-img0.png")
    (root / "dev" / "dev-3-0-img1.png").unlink()
    assert run(*eval_args(root, results, "image-only"), "--skip-missing").exit_code == 0
    assert len({r.run_key for r in iter_results(results)} | {first_key}) == 2
