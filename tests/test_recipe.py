"""docs/ARCHITECTURE.md "Adding things", followed word for word: a benchmark and a method, each one module + one card.

The two modules live in a temporary package folder announced the way an installed package is (a ``*.dist-info``
folder with ``entry_points.txt``, found by ``importlib.metadata``); nothing in cirbench is edited. The CLI then
lists them, evaluates the method card on the benchmark card, scores a rankings file and shows the leaderboard row.

The toy world is exact, so every number is known by hand: six solid-colour images, a method whose own gallery
encoder is an image's mean colour (``gallery="own"``) and whose query is the colour its text names (it consumes
the reference *images*, ``inputs="reference_images"``); ranking is cosine similarity, the reference removed.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from fault_support import run
from PIL import Image

from cirbench.benchmarks import BENCHMARKS
from cirbench.io import read_json
from cirbench.methods import METHODS
from cirbench.results import iter_results, rankings_path

# --- the benchmark: one module ---------------------------------------------------------------------------------------
BENCHMARK_MODULE = '''
"""toycolours: queries.json + images/*.png; R@1, R@2, R@3 with the reference removed."""

from cirbench import metrics as M
from cirbench.benchmarks.annotations import read_annotation_json
from cirbench.benchmarks.base import Benchmark, BenchmarkSplit, ImageRef, Part, Query
from cirbench.options import Option


class ToyColours(Benchmark):
    name = "toycolours"
    title = "ToyColours"
    splits = ("test",)
    options = (Option("remove_reference", "bool", True, "drop the reference from its ranking"),)
    main_metric = "R@1"
    metric_names = ("R@1", "R@2", "R@3")

    def read(self, root, split, options):
        path = root / "queries.json"
        records = read_annotation_json(path, "write it again")
        images = {p.stem: ImageRef(p.stem, p) for p in sorted((root / "images").glob("*.png"))}
        queries = [Query(str(r["id"]), r["reference"], (r["text"],), r["target"], (r["target"],)) for r in records]
        part = Part("all", queries, sorted(images), remove_reference=options["remove_reference"])
        return BenchmarkSplit(self.name, split, [part], images, options, [path], True, layout="toy")

    def metrics(self, data, rankings):
        self.require_rankings(data.queries, rankings)
        rows = [M.drop_reference(rankings.top[q.qid], q.reference) for q in data.queries]
        return {f"R@{k}": v for k, v in M.recall_at_k(rows, [q.target for q in data.queries], (1, 2, 3)).items()}
'''

# --- the method: one module ------------------------------------------------------------------------------------------
METHOD_MODULE = '''
"""colour-words: the query is the colour its text names (+ ``mix`` x the reference's mean colour); the gallery is
encoded by the method's own encoder, an image's mean colour."""

import numpy as np
import torch
import torch.nn.functional as F

from cirbench.backbones import BackboneIdentity
from cirbench.methods.base import Method, MethodEntry, MethodInfo, OwnEncoder
from cirbench.options import Option

COLOURS = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0)}
IDENTITY = BackboneIdentity("mean-colour:v1", "mean-colour-v1", False)


def mean_colour(image):
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).mean(dim=(0, 1))


class MeanColourEncoder:
    """The ``GalleryEncoder`` of this method: 3 numbers per image."""

    id, weights_id, quick_gelu = IDENTITY.id, IDENTITY.weights_id, IDENTITY.quick_gelu
    model_key, image_embed_dim, dtype = IDENTITY.model_key, 3, torch.float32
    collate = None  # torch stacks the 3-vectors
    preprocess = staticmethod(mean_colour)

    def __init__(self, device):
        self.device = torch.device(device)

    def encode_image(self, batch):
        return batch.float()


class ColourWords(Method):
    def __init__(self, options):
        self.mix = options["mix"]
        self.info = MethodInfo(name="colour-words")

    def describe(self):
        return {"mix": self.mix}

    def encode_queries(self, queries, texts, references):
        words = torch.tensor([COLOURS[variants[0].split()[-1]] for variants in texts], dtype=torch.float32)
        seen = torch.stack([mean_colour(image) for image in references])  # the reference images, as PIL
        return F.normalize(words + self.mix * F.normalize(seen, dim=-1), dim=-1)


ENTRY = MethodEntry(
    name="colour-words",
    factory=lambda encoder, checkpoint, options: ColourWords(options),
    description="the colour named by the text, against the images' mean colours",
    options=(Option("mix", "float", 0.0, "weight of the reference's mean colour", minimum=0.0),),
    inputs="reference_images",
    gallery="own",
    encoder=OwnEncoder(
        identify=lambda options: IDENTITY,
        load=lambda options, device, allow_download: MeanColourEncoder(device),
    ),
)
'''

# --- the two cards ---------------------------------------------------------------------------------------------------
BENCHMARK_CARD = """\
# The toy colour world (six solid-colour images, four queries).
name: toycolours
benchmark: toycolours
split: test
root: ../../data
options: {remove_reference: true}
"""

METHOD_CARD = """\
# colour-words with its own mean-colour gallery encoder (no backbone to name).
name: colour-words
method: colour-words
description: colour-words, mean-colour encoder
benchmarks: [toycolours]
options: {}
"""

# --- the package's metadata (what ``pip install`` would write) -------------------------------------------------------
ENTRY_POINTS = """\
[cirbench.benchmarks]
toycolours = toycolours:ToyColours

[cirbench.methods]
colour-words = colourwords:ENTRY
"""

IMAGES = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "white": (255, 255, 255),
    "rose": (255, 0, 128),
}
# (reference, text, target). Cosines to the named colour, reference removed, by hand:
# 0 "red":    red 1, rose .89, yellow .71, white .58, blue 0      -> target red at rank 1
# 1 "blue":   blue 1, white .58, rose .45, green = yellow 0       -> target blue at rank 1
# 2 "yellow": yellow 1, white .82, red = green .71, rose .63      -> target white at rank 2
# 3 "red":    red 1, rose .89, white .58, green = blue 0          -> target green at rank 4 or 5
QUERIES = [
    ("green", "make it red", "red"),
    ("red", "make it blue", "blue"),
    ("blue", "make it yellow", "white"),
    ("yellow", "make it red", "green"),
]
EXPECTED = {"R@1": 50.0, "R@2": 75.0, "R@3": 75.0}
HAND_RANKINGS = {
    "0": ["red", "rose", "yellow", "white", "blue"],
    "1": ["blue", "white", "rose", "green", "yellow"],
    "2": ["yellow", "white", "red", "green", "rose"],
    "3": ["red", "rose", "white", "green", "blue"],
}


@pytest.fixture
def toy_package(tmp_path, monkeypatch):
    """The plugin package on ``sys.path`` with its dist-info; the registries forget it afterwards."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "toycolours.py").write_text(textwrap.dedent(BENCHMARK_MODULE))
    (site / "colourwords.py").write_text(textwrap.dedent(METHOD_MODULE))
    info = site / "cirbench_toy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cirbench-toy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    BENCHMARKS.reload_plugins()
    METHODS.reload_plugins()
    yield site
    BENCHMARKS.unregister("toycolours")
    METHODS.unregister("colour-words")
    monkeypatch.undo()  # off sys.path before the registries look again
    for module in ("toycolours", "colourwords"):
        sys.modules.pop(module, None)
    BENCHMARKS.reload_plugins()
    METHODS.reload_plugins()
    assert "toycolours" not in BENCHMARKS and "colour-words" not in METHODS  # other tests see the usual registries


def _world(tmp_path: Path) -> Path:
    """data/ (images + queries.json) and cards/{methods,benchmarks}/ (one card each)."""
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    for name, colour in IMAGES.items():
        Image.new("RGB", (16, 16), colour).save(data / "images" / f"{name}.png")
    records = [{"id": i, "reference": r, "text": t, "target": g} for i, (r, t, g) in enumerate(QUERIES)]
    (data / "queries.json").write_text(json.dumps(records))
    for kind, card in (("benchmarks", BENCHMARK_CARD), ("methods", METHOD_CARD)):
        (tmp_path / "cards" / kind).mkdir(parents=True)
        (tmp_path / "cards" / kind / f"toy-{kind}.yaml").write_text(card)
    return tmp_path / "cards"


def test_the_recipe_one_module_and_one_card_each(toy_package, tmp_path):
    cards, results = _world(tmp_path), tmp_path / "results"

    listing = run("list")
    assert listing.exit_code == 0, listing.output
    assert "toycolours" in listing.output and "colour-words" in listing.output

    out = run(
        "eval",
        "--all",
        "--methods-dir",
        cards / "methods",
        "--benchmarks-dir",
        cards / "benchmarks",
        "--results-dir",
        results,
        "--device",
        "cpu",
    )
    assert out.exit_code == 0, out.output
    (result,) = iter_results(results)
    assert result.benchmark.name == "toycolours" and result.metrics == EXPECTED
    top = read_json(rankings_path(result.path))["top"]
    assert {qid: ranked[:2] for qid, ranked in top.items()} == {qid: r[:2] for qid, r in HAND_RANKINGS.items()}
    assert [sorted(top[qid]) for qid in top] == [sorted(r) for r in HAND_RANKINGS.values()]  # reference removed

    (tmp_path / "rankings.json").write_text(json.dumps(HAND_RANKINGS))
    args = ("--benchmark", "toycolours", "--root", tmp_path / "data", "--rankings", tmp_path / "rankings.json")
    scored = run("score", *args, "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output)["metrics"] == EXPECTED

    board = run("leaderboard", "--results-dir", results, "--no-reported")
    assert board.exit_code == 0, board.output
    assert "## ToyColours" in board.output and "colour-words" in board.output
