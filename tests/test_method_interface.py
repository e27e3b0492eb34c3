"""The typed method interface (issue 20): inputs, gallery encoder and capabilities are declared, never guessed.

A toy method that consumes the reference *images* and encodes the gallery with its *own* encoder (the mean colour of
an image) runs through the one evaluation path; its rankings are checked against a numpy ranking computed here, and
its encoder's identity is what the run key, the feature cache and the result record.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fault_support import one_line_error, run

from cirbench.backbones import BackboneIdentity
from cirbench.benchmarks.base import Query
from cirbench.errors import MethodError, OptionError
from cirbench.evaluation.evaluator import EvalSettings, evaluate, forget_backbones
from cirbench.evaluation.spec import RunRequest, resolve
from cirbench.methods import METHODS
from cirbench.methods.base import Method, MethodEntry, MethodInfo, OwnEncoder
from cirbench.options import Option

CAPTION_VECTORS = {  # the tiny CIRR split's four captions (tests/cirr_support.py)
    "make it green": (0.0, 1.0, 0.0),
    "add a dog": (1.0, 0.0, 0.0),
    "show it at night": (0.0, 0.0, 1.0),
    "remove the car": (1.0, 1.0, 0.0),
}


def mean_colour(image: Any) -> torch.Tensor:
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3)
    return torch.from_numpy(pixels.mean(0) / 255.0 + 0.1).float()  # + 0.1: no black image is a zero vector


@dataclass
class MeanColourEncoder:
    """A gallery encoder of the toy method: an image's mean colour (3 numbers)."""

    id: str = "mean-colour:v1"
    weights_id: str = "mean-colour-weights-1"
    quick_gelu: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    collate = None
    dtype = torch.float32
    image_embed_dim = 3

    @property
    def model_key(self) -> str:
        return f"mean-colour|{self.weights_id}"

    def preprocess(self, image: Any) -> torch.Tensor:
        return mean_colour(image)

    def encode_image(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.float()


class ColourShift(Method):
    """Query = normalise(normalise(mean colour of the reference image) + the caption's colour)."""

    def __init__(self, encoder: MeanColourEncoder) -> None:
        self.info = MethodInfo(name="colour-shift")
        self.encoder = encoder
        self.seen: list[type] = []

    def encode_queries(self, queries: Sequence[Query], texts: Sequence[Sequence[str]], references: Any):
        self.seen.extend(type(r) for r in references)
        image = F.normalize(torch.stack([mean_colour(r) for r in references]), dim=-1)
        text = torch.tensor([CAPTION_VECTORS[t[0]] for t in texts])
        return F.normalize(image + text, dim=-1)


BUILT: list[ColourShift] = []


def _build(encoder: Any, checkpoint: Path | None, options: Mapping[str, Any]) -> ColourShift:
    BUILT.append(ColourShift(encoder))
    return BUILT[-1]


def _identify(options: Mapping[str, Any]) -> BackboneIdentity:
    return BackboneIdentity("mean-colour:v1", "mean-colour-weights-1", False)


ENTRY = MethodEntry(
    name="colour-shift",
    factory=_build,
    description="toy: mean colour of the reference image shifted by the caption's colour",
    options=(Option("batch_size", "int", 2, "queries per batch", minimum=1, keyed=False),),
    inputs="reference_images",
    gallery="own",
    encoder=OwnEncoder(identify=_identify, load=lambda options, device, allow: MeanColourEncoder()),
)


@pytest.fixture
def colour_shift():
    METHODS.register(ENTRY, replace=True)
    BUILT.clear()
    forget_backbones()
    yield ENTRY
    METHODS.unregister(ENTRY.name)
    forget_backbones()


def _expected_tops(root: Path) -> dict[str, list[str]]:
    """The official CIRR ranking (every val image, the reference removed) computed here with numpy."""
    from PIL import Image

    split = json.loads((root / "cirr" / "image_splits" / "split.rc2.val.json").read_text())
    names = list(split)
    gallery = np.stack([mean_colour(Image.open(root / split[n].removeprefix("./"))).numpy() for n in names])
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    tops = {}
    for q in json.loads((root / "cirr" / "captions" / "cap.rc2.val.json").read_text()):
        ref = mean_colour(Image.open(root / split[q["reference"]].removeprefix("./"))).numpy()
        query = ref / np.linalg.norm(ref) + np.array(CAPTION_VECTORS[q["caption"]])
        query /= np.linalg.norm(query)
        scores = gallery @ query
        scores[names.index(q["reference"])] = -np.inf
        tops[str(q["pairid"])] = [names[i] for i in np.argsort(-scores, kind="stable") if names[i] != q["reference"]]
    return tops


def test_own_encoder_and_reference_images_rank_as_computed_by_hand(colour_shift, cirr_split, tmp_path):
    request = RunRequest(method="colour-shift", benchmark="cirr", split="val", root=cirr_split)
    spec = resolve(request)
    assert spec.backbone.model_key == "mean-colour|mean-colour-weights-1"  # the own encoder's identity, unloaded
    outcome = evaluate(spec, EvalSettings(results_dir=tmp_path / "results"))
    expected = _expected_tops(cirr_split)
    assert {qid: ranked[:10] for qid, ranked in outcome.rankings.top.items()} == {
        qid: ranked[:10] for qid, ranked in expected.items()
    }
    targets = {str(100 + q): f"dev-{q + 2}-0-img{q % 2}" for q in range(4)}
    for k in (1, 5, 10):
        hits = [targets[qid] in ranked[:k] for qid, ranked in expected.items()]
        assert outcome.result.metrics[f"R@{k}"] == pytest.approx(100 * sum(hits) / len(hits))
    # The method got the reference images (PIL), not feature rows; the encoder's identity is recorded and keyed.
    from PIL import Image

    assert BUILT[-1].seen and all(issubclass(kind, Image.Image) for kind in BUILT[-1].seen)
    assert outcome.result.backbone.id == "mean-colour:v1"
    assert outcome.result.key_fields["backbone"] == "mean-colour|mean-colour-weights-1"
    manifests = [json.loads(p.read_text()) for p in Path(_cache()).glob("features/*/manifest.json")]
    assert [m["backbone"] for m in manifests] == ["mean-colour:v1"]
    again = evaluate(resolve(request), EvalSettings(results_dir=tmp_path / "results"))
    assert again.reused and again.result.metrics == outcome.result.metrics


def _cache() -> str:
    import os

    return os.environ["CIRBENCH_CACHE"]


def test_a_method_with_its_own_encoder_refuses_a_backbone(colour_shift, cirr_split):
    with pytest.raises(MethodError, match="encodes the gallery with its own model"):
        resolve(RunRequest(method="colour-shift", benchmark="cirr", root=cirr_split, backbone="cirbench-tiny:random"))
    out = run("eval", "-m", "colour-shift", "-b", "cirbench-tiny:random", "--benchmark", "cirr", "--root", cirr_split)
    one_line_error(out, "colour-shift", "leave out --backbone")


def test_a_factory_that_builds_no_method_is_one_line(cirr_split, tmp_path):
    class NotAMethod:
        info = MethodInfo(name="plain")
        preprocess = "clip"
        caption_join = "both-orders"

    entry = MethodEntry(name="plain-object", factory=lambda b, c, o: NotAMethod(), description="not a Method")
    METHODS.register(entry, replace=True)
    try:
        out = run(
            "eval", "-m", "plain-object", "-b", "cirbench-tiny:random", "--benchmark", "cirr", "--root", cirr_split,
            "--results-dir", tmp_path, "--json",  # --json: no status line before the models load
        )  # fmt: skip
        one_line_error(out, "plain-object", "not a subclass of cirbench.methods.base.Method")
    finally:
        METHODS.unregister(entry.name)


def test_per_benchmark_defaults_live_on_the_method_and_are_typed():
    slerp = METHODS.get("slerp")
    assert slerp.defaults_for("cirr") == {"alpha": 0.9} and slerp.defaults_for("circo") == {"alpha": 0.8}
    assert slerp.defaults_for("genecis") == {}
    spec = resolve(RunRequest(method="slerp", benchmark="cirr", backbone="cirbench-tiny:random"))
    assert spec.method.options["alpha"] == 0.9
    spec = resolve(
        RunRequest(method="slerp", benchmark="cirr", backbone="cirbench-tiny:random", method_options={"alpha": "0.5"})
    )
    assert spec.method.options["alpha"] == 0.5  # the user's value wins
    alpha = Option("alpha", "float", 0.5, "weight", minimum=0)
    with pytest.raises(OptionError, match="alpha='high'"):
        MethodEntry("bad", _build, "x", options=(alpha,), benchmark_defaults={"cirr": {"alpha": "high"}})
    with pytest.raises(OptionError, match="beta"):
        MethodEntry("bad", _build, "x", options=(alpha,), benchmark_defaults={"cirr": {"beta": 1}})


def test_capabilities_have_defaults_on_the_base_class():
    class Bare(Method):
        info = MethodInfo(name="bare")

    bare = Bare()
    assert (bare.fuses_scores, bare.placeholder, bare.preprocess, bare.caption_join) == (
        False,
        None,
        "clip",
        "both-orders",
    )
    assert bare.check_queries([]) is None and bare.check_split([]) is None and bare.describe() == {}
    assert METHODS.get("fusion-sum").factory is not None


def test_no_benchmark_module_names_a_method_and_no_capability_is_guessed():
    """Capabilities are read as declared attributes: no ``getattr`` on a method, benchmark or rankings object in
    the evaluation path, and no benchmark module declares option values for a method."""
    root = Path(__file__).resolve().parents[1] / "cirbench"
    for path in [*(root / "evaluation").glob("*.py"), *(root / "benchmarks").glob("*.py"), root / "features.py"]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr":
                target = ast.unparse(node.args[0])
                assert target not in {"method", "benchmark", "bench", "rankings"}, f"{path.name}: getattr({target}"
        assert "method_defaults" not in path.read_text(), path.name
    registered = {entry.name for entry in METHODS.entries()}
    for path in (root / "benchmarks").glob("*.py"):
        text = path.read_text()
        for name in registered - {"random", "pic2word", "searle"}:  # the last two also name data layouts
            assert f'"{name}"' not in text and f"'{name}'" not in text, f"{path.name} names method {name}"


def test_reference_images_are_opened_by_the_benchmarks_reader(tmp_path):
    """GeneCIS attribute queries name a Visual Genome box: a method consuming reference images gets the crop
    (dilated and square-padded, as upstream), not the whole picture."""
    from PIL import Image

    from cirbench.benchmarks import get_benchmark
    from cirbench.benchmarks.base import BenchmarkSplit, ImageRef, Part
    from cirbench.benchmarks.genecis import open_genecis_image
    from cirbench.evaluation.engine import ReferenceImages

    Image.new("RGB", (200, 100), (10, 20, 30)).save(tmp_path / "7.jpg")
    ref = ImageRef("vg:7:20,10,40,30", tmp_path / "7.jpg", (20.0, 10.0, 40.0, 30.0))
    query = Query("q", ref.key, ("red",), candidates=(ref.key,))
    data = BenchmarkSplit("genecis", "val", [Part("change_attribute", [query], None)], {ref.key: ref}, {}, [], True)
    [image] = ReferenceImages(data, get_benchmark("genecis")).rows([ref.key])
    expected = open_genecis_image(ref)
    assert image.size == expected.size and image.size[0] == image.size[1] and image.size != (200, 100)
    assert np.array_equal(np.asarray(image), np.asarray(expected))
