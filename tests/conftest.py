"""Shared test fixtures: the real annotation files (skipped when absent) and tiny backbones."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from cirr_support import make_cirr
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SHARED_ANNOTATIONS = Path(os.environ.get("CIRBENCH_SHARED_ANNOTATIONS", ROOT.parent / "shared" / "annotations"))

torch.set_num_threads(min(2, torch.get_num_threads()))
# Before any fixture runs (session- and module-scoped ones too): the session's own cache, never the user's ~/.cache.
# Function-scoped tests get a fresh one each (``_isolated_cache``); what wider fixtures write lands here.
SESSION_CACHE = os.environ["CIRBENCH_CACHE"] = tempfile.mkdtemp(prefix="cirbench-test-cache-")
atexit.register(shutil.rmtree, SESSION_CACHE, ignore_errors=True)
# Property tests draw the same examples on every run (CI cannot turn red on a new draw) and write no example
# database into the work tree; the settings of each test inherit this profile.
settings.register_profile("cirbench", derandomize=True, database=None)
settings.load_profile("cirbench")


@pytest.fixture(scope="session")
def shared_annotations() -> Path:
    """``../shared/annotations`` (the real CIRCO/CIRR/FashionIQ/GeneCIS files); skip cleanly when absent."""
    if not SHARED_ANNOTATIONS.is_dir():
        pytest.skip(f"real annotation files not found at {SHARED_ANNOTATIONS}")
    return SHARED_ANNOTATIONS


@pytest.fixture(scope="session")
def tiny_backbone():
    """A deterministic random-init tiny open_clip model (no downloads)."""
    from cirbench.backbones import load_backbone

    return load_backbone("cirbench-tiny:random")


@pytest.fixture
def one_thread():
    """Run a test with one torch thread: contended small ops are far slower with two on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def _shared_spacy_pipeline():
    """One spaCy pipeline per (model, fast) for the whole session: loading it costs about a second, and the LinCIR
    tests build dozens of mask caches. Only the load is shared: every mask cache is still built (and checked) in its
    test's own cache. The installed package is part of the key, so a test that changes what resolves still gets
    what a fresh load would."""
    from cirbench.lincir import maskcache, masking

    real, loaded = masking.load_spacy, {}

    def shared(name: str = masking.DEFAULT_SPACY_MODEL, fast: bool = True):
        key = (name, fast, masking.resolve_spacy_model(name))
        if key not in loaded:
            loaded[key] = real(name, fast=fast)
        return loaded[key]

    patch = pytest.MonkeyPatch()
    patch.setattr(masking, "load_spacy", shared)
    patch.setattr(maskcache, "load_spacy", shared)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def committed_results(tmp_path_factory) -> Path:
    """A copy of the ``results/`` files that git tracks: what the repository ships, never what a user's commands
    left beside them (``tracked_copy``). Shared by the session: read it, do not write into it."""
    from committed_support import tracked_copy

    return tracked_copy("results", tmp_path_factory.mktemp("committed") / "results")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes features and results under its own temporary cache, never in the user's home."""
    monkeypatch.setenv("CIRBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def cirr_split(tmp_path) -> Path:
    """A tiny CIRR val split with generated images (see ``make_cirr``)."""
    return make_cirr(tmp_path / "CIRR")
