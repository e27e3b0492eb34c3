"""One evaluation path: strict options everywhere, run keys of options and identities only, reuse that loads no
model, cards found from any folder, the one atomic writer, and results of every schema readable."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cirbench.evaluation.evaluator as evaluate_module
from cirbench.cli import app
from cirbench.evaluation import RunRequest, resolve
from cirbench.evaluation.spec import key_fields
from cirbench.io import atomic_write_bytes, atomic_write_text
from cirbench.results import SCHEMA_VERSION, iter_results, read_result

FIXTURES = Path(__file__).parent / "fixtures"
runner = CliRunner()


def run(*args, cwd: Path | None = None):
    if cwd is None:
        return runner.invoke(app, [str(a) for a in args])
    before = Path.cwd()
    os.chdir(cwd)
    try:
        return runner.invoke(app, [str(a) for a in args])
    finally:
        os.chdir(before)


def eval_args(root: Path, results: Path, method: str = "image+text") -> list:
    return [
        "eval",
        "-m",
        method,
        "-b",
        "cirbench-tiny:random",
        "--benchmark",
        "cirr",
        "--split",
        "val",
        "--root",
        root,
        "--results-dir",
        results,
        "--device",
        "cpu",
    ]


# --------------------------------------------------------------------------------------------- strict options


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-o", "promt=x"], "method image+text: unknown option(s) promt; known: batch_size, fiq_join"),
        (["-o", "fiq_join=sideways"], "fiq_join='sideways' is not valid; expected one of both-orders"),
        (["-p", "remove_reference='false'"], "remove_reference=\"'false'\" is not valid; expected true/false"),
        (["-p", "remove_refrence=false"], "option(s) remove_refrence; known: protocol, remove_reference, scoring"),
        (["-p", "scoring"], "expected KEY=VALUE, got 'scoring'"),
        (["--split", "train"], "cirr has splits val, test1"),
    ],
)
def test_bad_options_are_one_line_errors_on_every_method(tmp_path, cirr_split, extra, message):
    out = run(*eval_args(cirr_split, tmp_path / "r"), *extra)
    assert out.exit_code == 2, out.output
    assert message in out.output and len(out.output.strip().splitlines()) == 1 and "Traceback" not in out.output
    assert not (tmp_path / "r").exists()


def test_boolean_words_are_parsed_not_truthy(tmp_path, cirr_split):
    out = run(*eval_args(cirr_split, tmp_path / "r", "image-only"), "-p", "remove_reference=FALSE")
    assert out.exit_code == 0, out.output
    (result,) = iter_results(tmp_path / "r")
    assert result.benchmark.options["remove_reference"] is False
    assert result.key_fields["protocol"] == {"remove_reference": False, "scoring": "hard"}  # official: not keyed


def test_unknown_names_are_user_errors():
    out = run("eval", "-m", "image+text", "-b", "cirbench-tiny:random", "--benchmark", "cirrr")
    assert out.exit_code == 2 and "unknown benchmark 'cirrr'; did you mean 'cirr'" in out.output
    out = run("eval", "-m", "image+txt", "-b", "cirbench-tiny:random", "--benchmark", "cirr")
    assert out.exit_code == 2 and "did you mean 'image+text'" in out.output


# --------------------------------------------------------------------------------------------- run keys


def test_run_key_hashes_options_and_identities_only(cirr_split, tmp_path):
    from cirbench.benchmarks import get_benchmark

    spec = resolve(RunRequest("image+text", "cirr", "cirbench-tiny:random", "val", cirr_split))
    data = get_benchmark("cirr").load(cirr_split, "val")
    fields = key_fields(spec, data.layout, data.annotations_sha256, None)
    assert fields["protocol"] == {"remove_reference": True, "scoring": "hard"}  # no facts; protocol=official not keyed
    assert fields["method_options"] == {"fiq_join": "both-orders"}  # batch_size does not change numbers
    assert "gallery_size" in data.facts and "gallery_size" not in json.dumps(fields)
    other = resolve(
        RunRequest("image+text", "cirr", "cirbench-tiny:random", "val", cirr_split, method_options={"batch_size": "3"})
    )
    assert key_fields(other, data.layout, data.annotations_sha256, None) == fields
    genecis = get_benchmark("genecis")
    a = genecis.parse_options({"coco_root": "/a"})
    b = genecis.parse_options({"coco_root": "/b"})
    assert a != b and {k: a[k] for k in ("tasks",)} == {k: b[k] for k in ("tasks",)}
    assert {o.name for o in genecis.options if o.keyed} == {"tasks"}  # where images live is not keyed


# --------------------------------------------------------------------------------------------- reuse


def _fail(*args, **kwargs):
    raise AssertionError("a model was loaded to reuse a finished result")


def test_reusing_a_finished_result_loads_no_model(tmp_path, cirr_split, monkeypatch, tiny_backbone):
    import cirbench.methods.lincir
    from cirbench.phi import Phi, save_safetensors

    phi = tmp_path / "phi.safetensors"
    save_safetensors(Phi.for_backbone(tiny_backbone.embed_dim, tiny_backbone.token_dim), phi, tiny_backbone.id, 5)
    results = tmp_path / "results"
    assert run(*eval_args(cirr_split, results)).exit_code == 0
    assert run(*eval_args(cirr_split, results, "lincir"), "--checkpoint", phi).exit_code == 0
    first = {r.method.name: r for r in iter_results(results)}
    monkeypatch.setattr(evaluate_module, "_BACKBONES", {})
    monkeypatch.setattr(evaluate_module, "load_backbone", _fail)
    monkeypatch.setattr(cirbench.backbones, "load_backbone", _fail)
    monkeypatch.setattr(cirbench.methods.lincir, "load_phi", _fail)
    for method, extra in (("image+text", []), ("lincir", ["--checkpoint", phi])):
        again = run(*eval_args(cirr_split, results, method), *extra)
        assert again.exit_code == 0, again.output
        assert "reused" in again.output
    second = {r.method.name: r for r in iter_results(results)}
    assert {k: (r.run_key, r.metrics) for k, r in second.items()} == {
        k: (r.run_key, r.metrics) for k, r in first.items()
    }


def _project(tmp_path: Path, root: Path) -> Path:
    """A project folder with cards whose paths are relative to the card files."""
    project = tmp_path / "project"
    (project / "methods").mkdir(parents=True)
    (project / "benchmarks").mkdir()
    (project / "work" / "deep").mkdir(parents=True)
    data = project / "data" / "CIRR"
    shutil.copytree(root, data)
    for method in ("image-only", "image+text"):
        card = {"name": f"{method}-tiny", "method": method, "backbone": "cirbench-tiny:random", "benchmarks": ["cirr"]}
        (project / "methods" / f"{method}.yaml").write_text(json.dumps(card))
    bench = {
        "name": "cirr-val",
        "benchmark": "cirr",
        "split": "val",
        "root": "../data/CIRR",
        "options": {"remove_reference": "yes"},
    }
    (project / "benchmarks" / "cirr-val.yaml").write_text(json.dumps(bench))
    return project


def test_eval_all_finds_cards_from_any_folder_and_reuses_without_loading(tmp_path, cirr_split, monkeypatch):
    project = _project(tmp_path, cirr_split)
    results = tmp_path / "results"
    out = run("eval", "--all", "--results-dir", results, "--device", "cpu", cwd=project / "work" / "deep")
    assert out.exit_code == 0, out.output
    assert "2 results (0 reused), 0 skipped" in out.output.replace("\n", " ")
    assert {r.method.name for r in iter_results(results)} == {"image-only", "image+text"}
    monkeypatch.setattr(evaluate_module, "_BACKBONES", {})
    monkeypatch.setattr(evaluate_module, "load_backbone", _fail)
    again = run("eval", "--all", "--results-dir", results, "--device", "cpu", cwd=project)
    assert again.exit_code == 0, again.output
    assert "2 results (2 reused)" in again.output.replace("\n", " ")


def test_eval_all_card_errors_name_the_card(tmp_path, cirr_split):
    project = _project(tmp_path, cirr_split)
    (project / "methods" / "image-only.yaml").write_text(
        json.dumps(
            {"name": "x", "method": "image-only", "backbone": "cirbench-tiny:random", "options": {"fiq_join": "x"}}
        )
    )
    out = run("eval", "--all", "--results-dir", tmp_path / "r", "--device", "cpu", cwd=project)
    assert out.exit_code == 2 and "image-only.yaml" in out.output and "unknown option(s) fiq_join" in out.output
    (project / "methods" / "image-only.yaml").write_text("name: [unclosed")
    out = run("eval", "--all", "--results-dir", tmp_path / "r", "--device", "cpu", cwd=project)
    assert out.exit_code == 2 and "cannot read card" in out.output and "Traceback" not in out.output


def test_without_a_project_eval_all_uses_the_built_in_shapes_cards(tmp_path):
    from cirbench.cards import PACKAGE_CARDS, find_card_dirs, load_cards, load_method_card

    assert find_card_dirs(tmp_path) == (PACKAGE_CARDS / "methods", PACKAGE_CARDS / "benchmarks")
    os.chdir(tmp_path)
    try:
        cards = {c.method: c for c in load_cards(PACKAGE_CARDS / "methods", load_method_card)}
    finally:
        os.chdir(Path(__file__).resolve().parents[1])
    assert cards["lincir"].checkpoint == tmp_path / "runs" / "demo" / "seed-0" / "lincir"  # $CWD: the demo's run
    assert {"image-only", "text-only", "image+text", "random"} <= set(cards)


# --------------------------------------------------------------------------------------------- the writer


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / "sub" / "a.txt", "hello")
    finally:
        os.umask(old)
    assert path.read_text() == "hello" and (path.stat().st_mode & 0o777) == (0o666 & ~umask)


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = atomic_write_bytes(tmp_path / "f.bin", b"old")

    def explode(handle):
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        from cirbench.io import atomic_write

        atomic_write(path, explode)
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_result_files_follow_the_umask(tmp_path, cirr_split):
    old = os.umask(0o022)
    try:
        assert run(*eval_args(cirr_split, tmp_path / "r", "image-only")).exit_code == 0
    finally:
        os.umask(old)
    (result,) = iter_results(tmp_path / "r")
    for path in result.path.parent.iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path


# --------------------------------------------------------------------------------------------- schemas


def test_schema_1_results_load_and_migrate(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(FIXTURES / "results", results)
    before = {r.run_key: r for r in iter_results(results)}
    assert before and all(r.migrated_from == {"schema_version": 1, "run_key": k} for k, r in before.items())
    dry = run("results", "migrate", "--results-dir", results, "--dry-run")
    assert dry.exit_code == 0 and f"{len(before)} result file(s) to migrate" in dry.output
    assert {r.run_key for r in iter_results(results)} == set(before)
    out = run("results", "migrate", "--results-dir", results)
    assert out.exit_code == 0, out.output
    after = list(iter_results(results))
    assert len(after) == len(before)
    for result in after:
        raw = json.loads(result.path.read_text())
        assert raw["schema_version"] == SCHEMA_VERSION and result.run_key in result.path.name
        old = before[result.migrated_from["run_key"]]
        assert result.metrics == old.metrics and result.run_key != old.run_key
        assert result.rankings_file is None or (result.path.parent / result.rankings_file).is_file()
        assert "warnings" not in result.key_fields["protocol"] and "gallery_known" not in result.key_fields["protocol"]
    assert not [p for p in results.rglob("*.json") if any(k in p.name for k in before)]
    assert "0 result file(s) migrated" in run("results", "migrate", "--results-dir", results).output


def test_a_damaged_result_is_one_line_naming_the_file(tmp_path, cirr_split):
    assert run(*eval_args(cirr_split, tmp_path / "r", "image-only")).exit_code == 0
    (result,) = iter_results(tmp_path / "r")
    result.path.write_text(json.dumps({"schema_version": 2, "run_key": "x"}))
    with pytest.raises(Exception, match="field key_fields: Field required"):
        read_result(result.path)
    out = run("leaderboard", "--results-dir", tmp_path / "r")
    assert out.exit_code == 2 and str(result.path) in out.output and "Traceback" not in out.output


# --------------------------------------------------------------------------------------------- review fixes


def test_eval_all_passes_the_activation_to_every_card(tmp_path, cirr_split):
    project = _project(tmp_path, cirr_split)
    results = tmp_path / "results"
    out = run("eval", "--all", "--quick-gelu", "--results-dir", results, "--device", "cpu", cwd=project)
    assert out.exit_code == 0, out.output
    assert {r.backbone.quick_gelu for r in iter_results(results)} == {True}
    card = json.loads((project / "methods" / "image-only.yaml").read_text())
    (project / "methods" / "image-only.yaml").write_text(json.dumps({**card, "quick_gelu": False}))
    out = run("eval", "--all", "--quick-gelu", "--results-dir", tmp_path / "r2", "--device", "cpu", cwd=project)
    assert out.exit_code == 0, out.output
    by_method = {r.method.name: r.backbone.quick_gelu for r in iter_results(tmp_path / "r2")}
    assert by_method == {"image-only": False, "image+text": True}  # the card's own word wins


def test_a_changed_backbone_file_is_a_new_identity_in_one_process(tmp_path, cirr_split):
    import open_clip
    import torch

    from cirbench.backbones import register_configs
    from cirbench.evaluation import EvalSettings, evaluate

    register_configs()
    weights = tmp_path / "tiny.pt"
    settings = EvalSettings(results_dir=tmp_path / "r")

    def write(seed: int) -> None:
        torch.manual_seed(seed)
        torch.save(open_clip.create_model("cirbench-tiny").state_dict(), weights)

    request = RunRequest("image+text", "cirr", f"cirbench-tiny:{weights}", "val", cirr_split, quick_gelu=False)
    write(1)
    first = evaluate(resolve(request), settings).result
    os.utime(weights, ns=(1, 1))  # a rewrite is seen by size and mtime
    write(2)
    second = evaluate(resolve(request), settings).result
    assert first.run_key != second.run_key and first.backbone.weights_id != second.backbone.weights_id
    fresh = evaluate(resolve(request), EvalSettings(results_dir=None)).result
    assert second.metrics == fresh.metrics


def test_a_checkpoint_for_a_method_without_one_is_refused(tmp_path, cirr_split):
    out = run(*eval_args(cirr_split, tmp_path / "r", "text-only"), "--checkpoint", tmp_path)
    assert out.exit_code == 2 and "method 'text-only' takes no checkpoint" in out.output


def test_a_package_folder_is_not_a_card_folder(tmp_path):
    from cirbench.cards import PACKAGE_CARDS, find_card_dirs

    package = tmp_path / "pkg"
    for name in ("methods", "benchmarks"):
        (package / name).mkdir(parents=True)
        (package / name / "__init__.py").write_text("")
    assert find_card_dirs(package / "methods") == (PACKAGE_CARDS / "methods", PACKAGE_CARDS / "benchmarks")
    repo = Path(__file__).resolve().parents[1]
    assert find_card_dirs(repo / "cirbench" / "lincir") == (repo / "methods", repo / "benchmarks")


def test_migration_keeps_an_existing_schema_2_result(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(FIXTURES / "results", results)
    assert run("results", "migrate", "--results-dir", results).exit_code == 0
    migrated = {r.run_key: r.path.read_text() for r in iter_results(results)}
    shutil.copytree(FIXTURES / "results", results, dirs_exist_ok=True)  # the old files come back
    assert run("results", "migrate", "--results-dir", results).exit_code == 0
    assert {r.run_key: r.path.read_text() for r in iter_results(results)} == migrated
    (results / "runs" / "cirr" / "val" / "broken.json").write_text("{")
    out = run("results", "migrate", "--results-dir", results)
    assert out.exit_code == 2 and "broken.json: cannot read the result file" in out.output


def test_a_truncated_backbone_file_is_one_line(tmp_path, cirr_split):
    import open_clip
    import torch

    from cirbench.backbones import register_configs

    register_configs()
    weights = tmp_path / "tiny.pt"
    torch.save(open_clip.create_model("cirbench-tiny").state_dict(), weights)
    weights.write_bytes(weights.read_bytes()[:1000])
    args = ["eval", "-m", "image-only", "-b", f"cirbench-tiny:{weights}", "--no-quick-gelu", "--benchmark", "cirr"]
    out = run(*args, "--root", cirr_split, "--results-dir", tmp_path / "r", "--device", "cpu")
    assert out.exit_code == 2, out.output
    assert f"cannot load cirbench-tiny weights from {weights}" in out.output and "Traceback" not in out.output
