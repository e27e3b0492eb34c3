"""Shared test fixtures: the real annotation files (skipped when absent) and tiny backbones."""

from __future__ import annotations

import json
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


@pytest.fixture
def one_thread():
    """Run a test with one torch thread: contended small ops are far slower with two on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes features and results under its own temporary cache, never in the user's home."""
    monkeypatch.setenv("CIRBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))


def make_cirr(root: Path) -> Path:
    """A 12-image CIRR val split in the SEARLE layout: 4 queries whose groups have 6 members each
    (reference = members[0], target = members[2])."""
    from PIL import Image

    names = [f"dev-{i}-0-img{i % 2}" for i in range(12)]
    (root / "cirr" / "captions").mkdir(parents=True)
    (root / "cirr" / "image_splits").mkdir(parents=True)
    (root / "dev").mkdir()
    for i, name in enumerate(names):
        Image.new("RGB", (48, 40), ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256)).save(root / "dev" / f"{name}.png")
    split = {name: f"./dev/{name}.png" for name in names}
    (root / "cirr" / "image_splits" / "split.rc2.val.json").write_text(json.dumps(split))
    queries = []
    for q in range(4):
        members = names[q : q + 6]
        queries.append(
            {
                "pairid": 100 + q,
                "reference": members[0],
                "target_hard": members[2],
                "target_soft": {members[2]: 1.0},
                "caption": ["make it green", "add a dog", "show it at night", "remove the car"][q],
                "img_set": {"id": q, "members": members, "reference_rank": 0, "target_rank": 2},
            }
        )
    (root / "cirr" / "captions" / "cap.rc2.val.json").write_text(json.dumps(queries))
    return root


@pytest.fixture
def cirr_split(tmp_path) -> Path:
    """A tiny CIRR val split with generated images (see ``make_cirr``)."""
    return make_cirr(tmp_path / "CIRR")
