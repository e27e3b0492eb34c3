"""The suite is hermetic: no fixture, of any scope, writes into the user's cache, and the committed results the tests
read are the tracked files only, never what a user's commands left beside them."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from committed_support import ROOT, tracked_copy, tracked_files
from conftest import SESSION_CACHE

USER_CACHE = (Path.home() / ".cache" / "cirbench").resolve()


@pytest.fixture(scope="module")
def module_scoped_cache() -> tuple[Path, Path]:
    """Where a module-scoped fixture (such as ``shapes_runs``) writes: features and the shapes renders."""
    from cirbench.benchmarks.shapes import cache_base
    from cirbench.paths import cache_root

    return cache_root().resolve(), cache_base().resolve()


def test_the_session_cache_is_a_temporary_folder_not_the_users(module_scoped_cache):
    from cirbench.benchmarks.shapes import cache_base
    from cirbench.paths import cache_root

    session = Path(SESSION_CACHE).resolve()
    assert session.is_relative_to(Path(tempfile.gettempdir()).resolve())
    assert not session.is_relative_to(USER_CACHE) and not USER_CACHE.is_relative_to(session)
    # Wider fixtures see the session's cache (set when conftest is imported, before any fixture runs) ...
    assert module_scoped_cache == (session, session / "shapes")
    # ... and each test its own, inside pytest's temporary folders.
    mine = cache_root().resolve()
    assert mine != session and not mine.is_relative_to(USER_CACHE)
    assert mine == Path(os.environ["CIRBENCH_CACHE"]).resolve() and cache_base().resolve() == mine / "shapes"


def test_committed_results_are_the_tracked_files_only(committed_results, tmp_path):
    names = tracked_files("results")
    if names is None:
        pytest.skip("not a git checkout: the results folder is copied whole")
    on_disk = sorted(name for name in names if (ROOT / name).is_file())
    copied = sorted(str(Path("results") / p.relative_to(committed_results)) for p in committed_results.rglob("*.*"))
    assert copied == on_disk and any(name.endswith(".rankings.json.gz") for name in on_disk)
    assert all((committed_results.parent / name).read_bytes() == (ROOT / name).read_bytes() for name in on_disk)

    # What a user's run leaves beside the tracked files (an untracked result) is not copied.
    repo = tmp_path / "repo"
    (repo / "results" / "runs").mkdir(parents=True)
    (repo / "results" / "runs" / "shipped.json").write_text("{}")
    (repo / "results" / "runs" / "left-by-a-user.json").write_text("{}")
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=30)
    subprocess.run(["git", "-C", str(repo), "add", "results/runs/shipped.json"], check=True, timeout=30)
    copy = tracked_copy("results", tmp_path / "copy", root=repo)
    assert [p.name for p in copy.rglob("*.json")] == ["shipped.json"]
