"""Shared test fixtures: the real annotation files (skipped when absent) and tiny backbones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SHARED_ANNOTATIONS = Path(os.environ.get("CIRBENCH_SHARED_ANNOTATIONS", ROOT.parent / "shared" / "annotations"))

torch.set_num_threads(min(2, torch.get_num_threads()))


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


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes features and results under its own temporary cache, never in the user's home."""
    monkeypatch.setenv("CIRBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
