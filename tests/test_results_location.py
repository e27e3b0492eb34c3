"""One results location, found like the cards: a run made from a subfolder of a project lands in the project's
``results/`` and that project's leaderboard shows it; without a project, ``$CIRBENCH_RESULTS``, else ``./results``."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cirbench.cards import PACKAGE_CARDS, find_card_dirs
from cirbench.cli import app
from cirbench.paths import RESULTS_ENV, find_results_dir
from cirbench.results import result_files

EVAL = ["eval", "-m", "image-only", "-b", "cirbench-tiny:random", "--benchmark", "cirr", "--device", "cpu"]


def run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def _project(tmp_path: Path) -> tuple[Path, Path]:
    project = tmp_path / "project"
    (project / "results" / "runs").mkdir(parents=True)
    sub = project / "notebooks" / "deeper"
    sub.mkdir(parents=True)
    return project, sub


def test_a_run_from_a_subfolder_lands_in_the_projects_results_and_its_leaderboard(tmp_path, cirr_split, monkeypatch):
    project, sub = _project(tmp_path)
    monkeypatch.chdir(sub)
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "elsewhere"))  # a project found upward comes first
    out = run(*EVAL, "--root", cirr_split, "--limit", "3")
    assert out.exit_code == 0, out.output
    (written,) = result_files(project / "results")
    assert f"wrote {written}" in out.output  # the location, absolute, on the run's own lines
    assert f"(results: {project / 'results'})" in out.output
    assert not (sub / "results").exists() and not (tmp_path / "elsewhere").exists()
    board = run("leaderboard", "--no-reported")  # from the subfolder too, no --results-dir
    assert board.exit_code == 0, board.output
    assert "image-only" in board.output and "cirbench-tiny" in board.output
    again = run(*EVAL, "--root", cirr_split, "--limit", "3")
    assert again.exit_code == 0 and f"reused {written}" in again.output, again.output


def test_every_results_dir_help_shows_the_one_location(tmp_path, monkeypatch):
    project, sub = _project(tmp_path)
    monkeypatch.chdir(sub)
    wanted = f"[default: {project / 'results'}]"
    for command in (["eval"], ["leaderboard"], ["stats"], ["verify"], ["results", "migrate"]):
        shown = " ".join(run(*command, "-h").output.replace("│", " ").split())
        assert wanted in shown, (command, shown)


def test_without_a_project_the_configured_default_then_the_working_directory(tmp_path, monkeypatch):
    lone = tmp_path / "lone"
    (lone / "results").mkdir(parents=True)  # a results/ with no runs/: another tool's, not taken for ours
    assert find_results_dir(lone) == lone / "results"  # ./results, where the first run creates runs/
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "configured"))
    assert find_results_dir(lone) == tmp_path / "configured"
    monkeypatch.setenv(RESULTS_ENV, "relative/res")
    assert find_results_dir(lone) == lone / "relative" / "res"
    package = tmp_path / "code"
    (package / "results" / "runs").mkdir(parents=True)
    (package / "results" / "__init__.py").write_text("")  # a Python package named results is not a results folder
    assert find_results_dir(package) == package / "relative" / "res"
    project, sub = _project(tmp_path)
    assert find_results_dir(sub) == project / "results" == find_results_dir(project)


def test_cards_and_results_share_the_upward_search(tmp_path):
    project, sub = _project(tmp_path)
    assert find_card_dirs(sub) == (PACKAGE_CARDS / "methods", PACKAGE_CARDS / "benchmarks")
    for kind in ("methods", "benchmarks"):
        (project / kind).mkdir()
        (project / kind / "x.yaml").write_text("name: x\n")
    assert find_card_dirs(sub) == (project / "methods", project / "benchmarks")
