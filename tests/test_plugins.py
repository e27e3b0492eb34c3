"""The design's promise: a benchmark or a method is one file, registered as a plugin, and then works everywhere.

Each plugin below is written to a temporary folder as a single module and announced through an entry point (the
same ``importlib.metadata`` path an installed package uses); nothing else in cirbench changes.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

import cirbench.registry
from cirbench.benchmarks import BENCHMARKS
from cirbench.cli import app
from cirbench.io import read_json
from cirbench.methods import METHODS
from cirbench.results import iter_results, rankings_path

TOY_BENCHMARK = '''
"""toybench: a CIR benchmark in one file (queries.json + images/*.png), R@1 and R@5 with the reference removed."""

from cirbench import metrics as M
from cirbench.benchmarks.annotations import read_annotation_json
from cirbench.benchmarks.base import Benchmark, BenchmarkSplit, ImageRef, Part, Query
from cirbench.options import Option


class ToyBench(Benchmark):
    name = "toybench"
    title = "ToyBench"
    splits = ("test",)
    options = (Option("remove_reference", "bool", True, "drop the reference from its ranking"),)
    main_metric = "R@1"
    metric_names = ("R@1", "R@5")

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
        return {f"R@{k}": v for k, v in M.recall_at_k(rows, [q.target for q in data.queries], (1, 5)).items()}
'''

TOY_METHOD = '''
"""weighted-sum: (1 - alpha) * image + alpha * text, normalised; a method in one file."""

import torch.nn.functional as F

from cirbench.methods.base import Method, MethodEntry, MethodInfo, average_variants
from cirbench.options import Option


class WeightedSum(Method):
    preprocess = "clip"
    caption_join = "both-orders"

    def __init__(self, backbone, options):
        self.backbone, self.alpha = backbone, options["alpha"]
        self.info = MethodInfo(name="weighted-sum")

    def describe(self):
        return {"alpha": self.alpha}

    def encode_queries(self, queries, texts, refs):
        text = average_variants(lambda flat, _refs: self.backbone.encode_text(flat), texts, refs)
        return F.normalize((1 - self.alpha) * F.normalize(refs.float(), dim=-1) + self.alpha * text, dim=-1)


ENTRY = MethodEntry(
    name="weighted-sum",
    factory=lambda backbone, checkpoint, options: WeightedSum(backbone, options),
    description="weighted sum of the normalised image and text features",
    options=(Option("alpha", "float", 0.5, "weight of the text", minimum=0.0),),
)
'''

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """Write plugin modules and announce them as entry points; the registries look again, then forget them."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    points: list[EntryPoint] = []
    original = cirbench.registry.entry_points

    def install(module: str, source: str, group: str, value: str) -> None:
        (folder / f"{module}.py").write_text(textwrap.dedent(source))
        points.append(EntryPoint(name=module, value=value, group=group))
        BENCHMARKS.reload_plugins()
        METHODS.reload_plugins()

    monkeypatch.setattr(
        cirbench.registry,
        "entry_points",
        lambda group: [p for p in points if p.group == group] + list(original(group=group)),
    )
    yield install
    BENCHMARKS.unregister("toybench")
    METHODS.unregister("weighted-sum")
    monkeypatch.setattr(cirbench.registry, "entry_points", original)
    BENCHMARKS.reload_plugins()
    METHODS.reload_plugins()


def _toy_data(root: Path) -> Path:
    """8 images, 4 queries: query i's reference is image 2i, its target image 2i+1."""
    (root / "images").mkdir(parents=True)
    for i in range(8):
        Image.new("RGB", (40, 40), ((50 * i) % 256, (90 * i) % 256, (130 * i) % 256)).save(
            root / "images" / f"im{i}.png"
        )
    queries = [
        {"id": i, "reference": f"im{2 * i}", "target": f"im{2 * i + 1}", "text": f"make it {c}"}
        for i, c in enumerate(["red", "green", "blue", "dark"])
    ]
    (root / "queries.json").write_text(json.dumps(queries))
    return root


def test_a_benchmark_in_one_file_works_everywhere(plugins, tmp_path):
    plugins("toybench", TOY_BENCHMARK, "cirbench.benchmarks", "toybench:ToyBench")
    root, results = _toy_data(tmp_path / "toy"), tmp_path / "results"
    listing = run("list", "benchmarks")
    assert listing.exit_code == 0 and "toybench" in listing.output and "remove_reference" in listing.output
    check = run("data", "check", "--benchmark", "toybench", "--root", root, "--json")
    assert check.exit_code == 0, check.output
    assert json.loads(check.output)["n_queries"] == 4 and json.loads(check.output)["ok"]
    args = ("eval", "-m", "image-only", "-b", "cirbench-tiny:random", "--benchmark", "toybench", "--root", root)
    out = run(*args, "--results-dir", results, "--device", "cpu")
    assert out.exit_code == 0, out.output
    (result,) = iter_results(results)
    assert result.benchmark.name == "toybench" and set(result.metrics) == {"R@1", "R@5"}
    assert result.key_fields["protocol"] == {"remove_reference": True}
    stored = read_json(rankings_path(result.path))["top"]
    assert all("im0" not in stored["0"] for _ in [0]) and len(stored["0"]) == 7  # reference removed
    # score: query 0's target first, query 1's third, queries 2 and 3 missing -> R@1 25, R@5 50 (as misses)
    ranking = {"0": ["im1", "im3"], "1": ["im0", "im4", "im3", "im5"]}
    (tmp_path / "r.json").write_text(json.dumps(ranking))
    scored = run(
        "score",
        "--benchmark",
        "toybench",
        "--root",
        root,
        "--rankings",
        tmp_path / "r.json",
        "--allow-missing",
        "--json",
    )
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output)["metrics"] == {"R@1": 25.0, "R@5": 50.0}
    board = run("leaderboard", "--results-dir", results, "--no-reported")
    assert board.exit_code == 0, board.output
    assert "## ToyBench" in board.output and "ToyBench R@1 (test)" in board.output
    bad = run(*args, "-p", "remove_reference=maybe", "--results-dir", results)
    assert bad.exit_code == 2 and "remove_reference='maybe'" in bad.output
    assert (
        "submission format"
        in run("submit", "--benchmark", "toybench", "--run", result.run_key, "--results-dir", results).output
    )


def test_a_method_in_one_file_works_and_its_options_are_typed(plugins, tmp_path, cirr_split):
    plugins("toymethod", TOY_METHOD, "cirbench.methods", "toymethod:ENTRY")
    root = cirr_split
    listing = run("list", "methods")
    assert listing.exit_code == 0 and "weighted-sum" in listing.output and "alpha: float" in listing.output
    base = ("eval", "-b", "cirbench-tiny:random", "--benchmark", "cirr", "--root", root, "--device", "cpu")

    def top(method: str, *options: str) -> dict:
        results = tmp_path / f"r-{method}-{'-'.join(options)}"
        out = run(*base, "-m", method, *options, "--results-dir", results)
        assert out.exit_code == 0, out.output
        (result,) = iter_results(results)
        return read_json(rankings_path(result.path))["top"]

    # Known answers: alpha 0 is image-only, alpha 1 is text-only.
    assert top("weighted-sum", "-o", "alpha=0") == top("image-only")
    assert top("weighted-sum", "-o", "alpha=1.0") == top("text-only")
    bad = run(*base, "-m", "weighted-sum", "-o", "alpha=-1", "--results-dir", tmp_path / "x")
    assert bad.exit_code == 2 and "alpha='-1' is not valid; expected at least 0" in bad.output
    bad = run(*base, "-m", "weighted-sum", "-o", "beta=1", "--results-dir", tmp_path / "x")
    assert bad.exit_code == 2 and "unknown option(s) beta; known: alpha" in bad.output


def test_a_broken_plugin_is_one_warning_never_a_crash(plugins, caplog):
    with caplog.at_level(logging.WARNING, logger="cirbench"):
        plugins("brokenplugin", "raise ImportError('missing dependency foo')", "cirbench.methods", "brokenplugin:X")
    warnings = [r.getMessage() for r in caplog.records if "brokenplugin" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert (
        "skipped the method plugin entry point 'brokenplugin'" in warnings[0]
        and "missing dependency foo" in warnings[0]
    )
    listing = run("list", "methods")
    assert listing.exit_code == 0 and "image+text" in listing.output


def test_a_plugin_written_for_the_old_option_format_is_skipped(plugins, caplog):
    old_style = TOY_METHOD.replace(
        'options=(Option("alpha", "float", 0.5, "weight of the text", minimum=0.0),)', 'options={"alpha": 0.5}'
    )
    with caplog.at_level(logging.WARNING, logger="cirbench"):
        plugins("oldstylemethod", old_style, "cirbench.methods", "oldstylemethod:ENTRY")
    assert any("'options' must be a tuple of cirbench.options.Option" in r.getMessage() for r in caplog.records)
    listing = run("list", "methods")
    assert listing.exit_code == 0 and "weighted-sum" not in listing.output


# --- discovery: a built-in module is found in its folder, no list to edit --------------------------------------------
def _registry(package: str) -> cirbench.registry.Registry:
    return cirbench.registry.Registry(
        "method", adapt=lambda obj: obj, name_of=lambda obj: obj["name"], builtin_packages=(package,)
    )


def test_every_module_of_a_builtin_folder_is_imported_on_the_first_lookup(tmp_path, monkeypatch):
    package = tmp_path / "discovered_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("REGISTRY = None\n")
    register = "from discovered_pkg import REGISTRY\nREGISTRY.register({{'name': {name!r}}})\n"
    (package / "zeta.py").write_text(register.format(name="zeta-method"))
    (package / "alpha.py").write_text(register.format(name="alpha-method"))
    (package / "helpers.py").write_text("VALUE = 1  # registers nothing: fine\n")
    (package / "_private.py").write_text("raise RuntimeError('a private module is never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cirbench.registry, "entry_points", lambda group: [])
    registry = _registry("discovered_pkg")
    import discovered_pkg

    discovered_pkg.REGISTRY = registry
    assert registry.builtin_modules() == ["discovered_pkg.alpha", "discovered_pkg.helpers", "discovered_pkg.zeta"]
    assert registry.names() == ["alpha-method", "zeta-method"]
    # A module added later (no list edited) is found by the next fresh registry.
    (package / "later.py").write_text(register.format(name="later-method"))
    later = _registry("discovered_pkg")
    discovered_pkg.REGISTRY = later
    assert "later-method" in later.names()


def test_a_broken_builtin_module_raises_on_every_lookup(tmp_path, monkeypatch):
    package = tmp_path / "broken_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "bad.py").write_text("raise ImportError('a bug in a built-in module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = _registry("broken_pkg")
    for _ in range(2):  # never a half-loaded registry that forgets the bug
        with pytest.raises(ImportError, match="a bug in a built-in module"):
            registry.names()


def test_the_builtin_folders_are_discovered_lazily_and_without_optional_dependencies():
    """Importing the registries imports no method or benchmark module; the first lookup imports every module of
    the two folders, and none of them pulls in an optional dependency (transformers, mteb) at import time."""
    code = textwrap.dedent(
        """
        import sys
        from cirbench.benchmarks import BENCHMARKS
        from cirbench.methods import METHODS
        before = sorted(m for m in sys.modules if m in ("cirbench.methods.searle", "cirbench.benchmarks.cirr"))
        METHODS.names(), BENCHMARKS.names()
        expected = METHODS.builtin_modules() + BENCHMARKS.builtin_modules()
        optional = [m for m in ("transformers", "mteb") if m in sys.modules]
        print(before, [m for m in expected if m not in sys.modules], optional)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[] [] []", out.stderr
    package = Path(cirbench.registry.__file__).parent
    for name, registry in (("methods", METHODS), ("benchmarks", BENCHMARKS)):
        files = {p.stem for p in (package / name).glob("*.py") if not p.name.startswith("_")}
        files |= {p.parent.name for p in (package / name).glob("*/__init__.py") if not p.parent.name.startswith("_")}
        assert registry.builtin_modules() == [f"cirbench.{name}.{stem}" for stem in sorted(files)]
