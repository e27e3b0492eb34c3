"""Guarantees 1, 2 and 8 for results: identity at reuse, integrity of results and rankings, `cirbench verify`, and
one writer per result. Each test asserts a known answer (an exit code and a message fragment, metrics equal to a
clean run's, or a file equal byte for byte to the committed one)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

from fault_support import one_line_error, run
from filelock import FileLock

from cirbench.integrity import seal_json
from cirbench.results import iter_results


def eval_args(root: Path, results: Path, method: str = "image-only", *extra) -> list:
    return [
        "eval", "-m", method, "-b", "cirbench-tiny:random", "--benchmark", "cirr", "--split", "val",
        "--root", root, "--results-dir", results, "--device", "cpu", *extra,
    ]  # fmt: skip


def _only(results: Path):
    (result,) = iter_results(results)
    return result


def _rewrite_images(root: Path, shift: int) -> None:
    """Give every image of the split another image's pixels (same names, new contents)."""
    from PIL import Image

    files = sorted((root / "dev").glob("*.png"))
    pictures = [Image.open(f).convert("RGB") for f in files]
    for i, path in enumerate(files):
        pictures[(i + shift) % len(files)].save(path)


# --------------------------------------------------------------------------------------------- identity at reuse


def test_changed_images_are_recomputed_and_replaced_not_reused(tmp_path, cirr_split, one_thread, caplog):
    results = tmp_path / "r"
    assert run(*eval_args(cirr_split, results)).exit_code == 0
    before = _only(results)
    _rewrite_images(cirr_split, 5)
    again = run(*eval_args(cirr_split, results))
    assert again.exit_code == 0, again.output
    note = f"images changed (their paths, sizes or modification times) since run {before.run_key}"
    assert note in caplog.text and "recomputing" in caplog.text and "reused" not in again.output
    after = _only(results)  # replaced under the same key: the key holds no image identity
    assert after.run_key == before.run_key and after.benchmark.images_sha256 != before.benchmark.images_sha256
    assert run(*eval_args(cirr_split, tmp_path / "clean", "image-only", "--no-cache")).exit_code == 0
    assert after.metrics == _only(tmp_path / "clean").metrics != before.metrics
    assert "reused" in run(*eval_args(cirr_split, results)).output  # now it matches


def test_a_verified_result_is_compared_by_contents_like_with_like(tmp_path, cirr_split, one_thread, caplog):
    assert run(*eval_args(cirr_split, tmp_path / "v", "image-only", "--verify")).exit_code == 0
    assert run(*eval_args(cirr_split, tmp_path / "s")).exit_code == 0
    for path in (cirr_split / "dev").glob("*.png"):  # new times, same bytes
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    verified = run(*eval_args(cirr_split, tmp_path / "v"))
    assert verified.exit_code == 0 and "reused" in verified.output and not caplog.text  # contents are equal
    stat_only = run(*eval_args(cirr_split, tmp_path / "s"))
    assert stat_only.exit_code == 0 and "images changed" in caplog.text and "wrote" in stat_only.output


def test_committed_shapes_results_are_reused_where_the_images_are_rendered_again(tmp_path, caplog, committed_results):
    """A fresh clone renders the shapes gallery into its own (here: empty, per-test) cache: other paths and times,
    the same recipe (hashed in the key through spec.json). The committed result is reused, not recomputed."""
    results = tmp_path / "results"
    shutil.copytree(committed_results / "runs" / "shapes" / "test", results / "runs" / "shapes" / "test")
    args = ["eval", "-m", "image-only", "-b", "shapes-clip:v2", "--benchmark", "shapes", "--split", "test"]
    out = run(*args, "--results-dir", results, "--device", "cpu")
    assert out.exit_code == 0, out.output
    assert "reused" in out.output and "736affaef6f0" in out.output and not caplog.text  # no note: sealed, matching


# --------------------------------------------------------------------------------------------- integrity


def test_an_edited_result_or_rankings_file_is_one_line_in_every_reader(tmp_path, cirr_split, one_thread):
    results = tmp_path / "r"
    assert run(*eval_args(cirr_split, results, "image+text")).exit_code == 0
    result = _only(results)
    text = result.path.read_text()
    result.path.write_text(text.replace(f'"R@1": {result.metrics["R@1"]}', '"R@1": 99.0'))
    for args in (eval_args(cirr_split, results, "image+text"), ["leaderboard", "--results-dir", results]):
        one_line_error(run(*args), str(result.path), "does not match its digest")
    result.path.write_text(text)
    rankings = result.path.with_name(result.rankings_file)
    raw = json.loads(gzip.decompress(rankings.read_bytes()))
    first = next(iter(raw["top"]))
    raw["top"][first] = raw["top"][first][::-1]
    rankings.write_bytes(gzip.compress(json.dumps(raw).encode()))
    for command in ("stats", "inspect"):
        out = run(command, result.run_key, "--results-dir", results)
        one_line_error(out, str(rankings), "stored rankings", "does not match its recorded sha256")


def test_verify_reports_ok_differs_and_damaged(tmp_path, cirr_split, one_thread):
    results = tmp_path / "r"
    assert run(*eval_args(cirr_split, results)).exit_code == 0
    result = _only(results)
    ok = run("verify", "--results-dir", results)
    assert ok.exit_code == 0 and "1 ok, 0 differs, 0 damaged, 0 not checkable" in ok.output, ok.output
    raw = json.loads(result.path.read_text())
    raw["metrics"]["R@1"] = raw["metrics"]["R@1"] + 10.0  # consistent (re-sealed) but wrong
    result.path.write_text(json.dumps(seal_json(raw), indent=2))
    differs = run("verify", result.run_key[:6], "--results-dir", results)
    assert differs.exit_code == 1 and "differs:" in differs.output, differs.output
    assert f"R@1 stored {raw['metrics']['R@1']:.4f}, rescored {result.metrics['R@1']:.4f}" in differs.output
    raw["metrics"]["R@1"] = 12.345  # edited, digest now stale
    result.path.write_text(json.dumps(raw, indent=2))
    damaged = run("verify", result.path, "--results-dir", results)
    assert damaged.exit_code == 1 and "damaged:" in damaged.output and "0 ok, 0 differs, 1 damaged" in damaged.output
    shutil.rmtree(cirr_split)  # no data: not checkable, which does not fail verify
    result.path.write_text(json.dumps(seal_json({**raw, "metrics": result.metrics}), indent=2))
    gone = run("verify", "--results-dir", results)
    assert gone.exit_code == 0 and "0 ok, 0 differs, 0 damaged, 1 not checkable" in gone.output, gone.output


def test_legacy_schema_2_is_read_with_a_note_and_migrate_seals_it_exactly(tmp_path, caplog, committed_results):
    folder = tmp_path / "results" / "runs" / "shapes" / "test"
    folder.mkdir(parents=True)
    name = "image-only--shapes-clip_v2--736affaef6f0"
    shapes = committed_results / "runs" / "shapes" / "test"
    committed = (shapes / f"{name}.json").read_text()
    shutil.copy(shapes / f"{name}.rankings.json.gz", folder)
    legacy = {k: v for k, v in json.loads(committed).items() if k not in ("digest", "rankings_sha256")}
    (folder / f"{name}.json").write_text(json.dumps({**legacy, "schema_version": 2}, indent=2) + "\n")
    board = run("leaderboard", "--results-dir", tmp_path / "results")
    assert board.exit_code == 0 and "schema-2 result without a digest" in caplog.text
    out = run("results", "migrate", "--results-dir", tmp_path / "results")
    assert out.exit_code == 0 and "sealed" in out.output and "1 result file(s) migrated" in out.output
    assert (folder / f"{name}.json").read_text() == committed  # only the two fields added, as committed
    edited = {**legacy, "schema_version": 2, "digest": "sha256:0"}  # a sealed file relabelled as legacy
    (folder / f"{name}.json").write_text(json.dumps(edited))
    one_line_error(run("leaderboard", "--results-dir", tmp_path / "results"), "with digest fields: the file was edited")


# --------------------------------------------------------------------------------------------- one writer


def test_a_second_writer_of_one_result_is_refused(tmp_path, cirr_split, one_thread):
    from cirbench.evaluation.reuse import lock_path

    results = tmp_path / "r"
    assert run(*eval_args(cirr_split, results)).exit_code == 0
    path = _only(results).path
    path.unlink()
    with FileLock(lock_path(path)):  # another process computing this result
        one_line_error(run(*eval_args(cirr_split, results)), str(path), "being computed by another process")
        assert not path.exists()
    assert "wrote" in run(*eval_args(cirr_split, results)).output


def test_a_result_whose_rankings_were_damaged_is_computed_again_not_reused(tmp_path, cirr_split, one_thread, caplog):
    results = tmp_path / "r"
    assert run(*eval_args(cirr_split, results)).exit_code == 0
    before = _only(results)
    rankings = results / "runs" / "cirr" / "val" / before.rankings_file
    data = json.loads(gzip.decompress(rankings.read_bytes()))
    first = next(iter(data["top"]))
    data["top"][first] = list(reversed(data["top"][first]))
    rankings.write_bytes(gzip.compress(json.dumps(data).encode()))
    again = run(*eval_args(cirr_split, results))
    assert again.exit_code == 0 and "reused" not in again.output, again.output
    assert "its stored rankings are damaged or missing" in caplog.text and before.run_key in caplog.text
    after = _only(results)
    assert after.metrics == before.metrics and after.rankings_sha256 == before.rankings_sha256
