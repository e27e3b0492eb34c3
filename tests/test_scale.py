"""Scaling out: torchrun evaluation equals one process, and the gallery index choice (exact, faiss)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

import cirbench.features as features_module
from cirbench.benchmarks.base import ImageRef
from cirbench.cli import app
from cirbench.errors import DistributedError, SearchIndexError
from cirbench.evaluation import EvalSettings, RunRequest, evaluate, resolve
from cirbench.evaluation.distributed import assemble, shards
from cirbench.evaluation.suite import run_suite
from cirbench.features import batch_starts, encode_images, encode_rows
from cirbench.leaderboard.entries import entry_from_result
from cirbench.search import IndexSpec, parse_index, search_gallery

runner = CliRunner()
SMALL_SHAPES = {"renders": 1, "queries_per_style": 40}  # 576 gallery images, 2 x 40 queries


# ------------------------------------------------------------------------------------------------ sharding


@pytest.mark.parametrize(("n", "batch", "world"), [(576, 8, 2), (100, 7, 3), (5, 8, 4), (0, 8, 2), (4100, 64, 3)])
def test_shards_cover_every_row_once_on_batch_boundaries(n, batch, world):
    starts = batch_starts(n, batch)
    bounds = shards(starts, n, world)
    assert len(bounds) == world
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    assert all(a in (*starts, n) and b in (*starts, n) for a, b in bounds)
    assert sum(b - a for a, b in bounds) == n


def test_assemble_refuses_duplicated_or_dropped_rows():
    good = [(1, 3, 5, "b", None), (0, 0, 3, "a", None)]
    good = [(rank, a, b, b - a, payload) for rank, a, b, payload, _ in good]
    assert assemble(good, 5, "image features") == ["a", "b"]
    overlapping = [(0, 0, 3, 3, "a"), (1, 2, 5, 3, "b")]
    with pytest.raises(DistributedError, match=r"sent 6 image features for 5 .*encoded twice or not at all"):
        assemble(overlapping, 5, "image features")
    short = [(0, 0, 3, 3, "a"), (1, 3, 5, 1, "b")]  # rank 1 lost a row
    with pytest.raises(DistributedError, match="rank 1: rows 3:5 with 1"):
        assemble(short, 5, "query features")
    with pytest.raises(DistributedError, match="sent 3 image features for 5; some were not encoded"):
        assemble([(0, 0, 3, 3, "a")], 5, "image features")


def test_shards_encode_bitwise_what_one_process_encodes(tmp_path, tiny_backbone, monkeypatch):
    monkeypatch.setattr(features_module, "CHUNK", 16)  # shards that cross cache chunks, as a large gallery does
    refs = []
    for i in range(37):
        Image.new("RGB", (24, 20), ((29 * i) % 256, (83 * i) % 256, (47 * i) % 256)).save(tmp_path / f"{i}.png")
        refs.append(ImageRef(str(i), tmp_path / f"{i}.png"))
    whole = encode_images(tiny_backbone, refs, batch_size=5, use_cache=False).features
    bounds = shards(batch_starts(len(refs), 5), len(refs), 3)
    parts = [encode_rows(tiny_backbone, refs, a, b, batch_size=5) for a, b in bounds]
    assert [len(p) for p in parts] == [b - a for a, b in bounds]
    assert np.array_equal(np.concatenate(parts), whole)


def test_a_partial_torchrun_environment_is_one_line(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(app, ["eval", "-m", "image+text", "--benchmark", "shapes", "-b", "shapes-clip:v2"])
    assert result.exit_code == 2
    assert "error: WORLD_SIZE=2 is set but RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT is not" in result.output


def _cards(tmp_path: Path) -> tuple[Path, Path]:
    """Two method cards (one embedding, one score fusion) and one small shapes card."""
    methods, benchmarks = tmp_path / "methods", tmp_path / "benchmarks"
    methods.mkdir()
    benchmarks.mkdir()
    for name, method in (("plain", "image+text"), ("fused", "fusion-sum")):
        (methods / f"{name}.yaml").write_text(f"name: {name}\nmethod: {method}\nbackbone: shapes-clip:v2\n")
    (benchmarks / "shapes.yaml").write_text(
        "name: shapes-small\nbenchmark: shapes\nsplit: test\noptions: {renders: 1, queries_per_style: 40}\n"
    )
    return methods, benchmarks


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process(tmp_path):
    """`torchrun --nproc_per_node 2 -m cirbench eval --all` (gloo, CPU): same run keys, rankings, scores and
    metrics as one process, the world size recorded, only rank 0 printing, the features cached by rank 0."""
    methods, benchmarks = _cards(tmp_path)
    single, double = tmp_path / "single", tmp_path / "double"
    settings = EvalSettings(results_dir=single, batch_size=8, use_cache=False)  # nothing cached for torchrun
    report = run_suite(methods, benchmarks, settings)
    assert len(report.outcomes) == 2 and not report.skipped
    cache = Path(os.environ["CIRBENCH_CACHE"])
    assert not (cache / "features").exists()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    command += ["cirbench", "eval", "--all", "--methods-dir", str(methods), "--benchmarks-dir", str(benchmarks)]
    command += ["--results-dir", str(double), "--batch-size", "8"]  # 72 image batches, query slices 32 + 8
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("  wrote ") == 2  # rank 0 prints each result once; rank 1 prints nothing
    files = sorted(p.relative_to(single) for p in single.rglob("*.json*"))
    assert files == sorted(p.relative_to(double) for p in double.rglob("*.json*")) and len(files) == 4
    for name in files:
        if name.suffix == ".gz":
            one, two = (json.loads(gzip.decompress((root / name).read_bytes())) for root in (single, double))
            assert one == two  # top-50 per query, scores and all
            continue
        one, two = (json.loads((root / name).read_text()) for root in (single, double))
        assert one["metrics"] == two["metrics"] and one["run_key"] == two["run_key"]
        assert (one["run_settings"]["world_size"], two["run_settings"]["world_size"]) == (1, 2)
        assert "world_size" not in two["key_fields"]
    (entry,) = list((cache / "features").iterdir())  # both methods share the gallery: encoded once, cached
    assert np.load(entry / "features.npy").shape[0] == 576


# ------------------------------------------------------------------------------------------------ index choice


def _random_case(n: int = 600, dim: int = 32, queries: int = 40, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    gallery = F.normalize(torch.randn(n, dim, generator=generator), dim=-1)
    query = F.normalize(torch.randn(queries, dim, generator=generator), dim=-1)
    exclude = [i * 7 if i % 3 else None for i in range(queries)]  # some queries have a reference to drop
    return query, gallery, exclude


def test_faiss_flat_ranks_as_exact_search():
    pytest.importorskip("faiss")
    query, gallery, exclude = _random_case()
    exact = search_gallery(query, gallery, 50, exclude)
    scores = query @ gallery.T
    top = torch.topk(scores, 52, dim=1).values
    assert bool((top[:, :-1] - top[:, 1:]).min() > 1e-6)  # distinct scores: no tie to order either way
    flat = search_gallery(query, gallery, 50, exclude, parse_index("faiss-flat"))
    assert flat.indices == exact.indices
    assert np.allclose(flat.scores, exact.scores, atol=1e-5)
    assert all(e is None or e not in row for e, row in zip(exclude, flat.indices, strict=True))
    assert all(len(row) == 50 for row in flat.indices) and flat.recall_queries == 0  # exact: nothing to measure


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("faiss-ivf", {"nlist": "32", "nprobe": "2"}),
        ("faiss-hnsw", {"M": "8", "ef_construction": "40", "ef_search": "8"}),
    ],
)
def test_an_approximate_index_measures_its_recall(name, params):
    pytest.importorskip("faiss")
    query, gallery, exclude = _random_case(n=2000, queries=30)
    spec = parse_index(name, {**params, "recall_sample": "20"})
    found = search_gallery(query, gallery, 50, exclude, spec)
    assert found.recall_queries == 20 and found.recall_total == 20 * 50
    assert 0 < found.recall_hits <= found.recall_total
    assert spec.key == {"name": name, "params": {k: int(v) for k, v in params.items()}}  # sample size: not keyed


def test_index_choice_errors_are_one_line(tmp_path):
    with pytest.raises(SearchIndexError, match=r"--index 'annoy' is unknown; choose one of exact, faiss-flat"):
        parse_index("annoy")
    result = runner.invoke(app, ["eval", "-m", "image+text", "--benchmark", "shapes", "--index", "annoy"])
    assert result.exit_code == 2 and result.output.strip().startswith("error: --index 'annoy' is unknown")
    result = runner.invoke(app, ["eval", "-m", "image+text", "--benchmark", "shapes", "--index-param", "nprobe=2"])
    assert result.exit_code == 2 and "error: --index exact: unknown option(s) nprobe; known: none" in result.output


def _shapes(method: str = "image+text", index: str = "exact", **params: str):
    request = RunRequest(
        method=method,
        backbone="shapes-clip:v2",
        benchmark="shapes",
        protocol_options=SMALL_SHAPES,
        index=index,
        index_params=params,
    )
    return resolve(request)


def test_an_approximate_run_is_keyed_recorded_and_marked(tmp_path):
    pytest.importorskip("faiss")
    settings = EvalSettings(results_dir=tmp_path / "results", batch_size=64)
    exact = evaluate(_shapes(), settings)
    ivf = evaluate(_shapes(index="faiss-ivf", nlist="16", nprobe="1"), settings)
    assert ivf.result.run_key != exact.result.run_key
    assert ivf.result.key_fields["index"] == {"name": "faiss-ivf", "params": {"nlist": 16, "nprobe": 1}}
    record = ivf.result.run_settings["index"]
    assert record["recall_queries"] == 80 and 0 < record["recall@50"] <= 1
    assert exact.result.run_settings["index"] == {"name": "exact", "params": {}}
    assert "index" not in exact.result.key_fields
    marked = entry_from_result(ivf.result).protocol
    assert marked[-1] == f"faiss-ivf (recall@50 {record['recall@50']:.2f})"
    assert not any("recall" in p for p in entry_from_result(exact.result).protocol)
    flat = evaluate(_shapes(index="faiss-flat"), settings)  # exact search in faiss: the exact run's key and numbers
    assert flat.reused and flat.result.run_key == exact.result.run_key
    recomputed = evaluate(_shapes(index="faiss-flat"), EvalSettings(results_dir=None))
    assert recomputed.result.metrics == exact.result.metrics
    assert recomputed.rankings.top == exact.rankings.top


def test_an_index_refuses_a_run_it_cannot_rank(tmp_path):
    pytest.importorskip("faiss")
    with pytest.raises(SearchIndexError, match="fuses two similarity matrices, which no single index holds"):
        evaluate(_shapes("fusion-sum", "faiss-hnsw"), EvalSettings(results_dir=tmp_path))
    assert not list(tmp_path.rglob("*.json"))


def test_eval_all_skips_a_pair_the_index_cannot_rank(tmp_path):
    pytest.importorskip("faiss")
    methods, benchmarks = _cards(tmp_path)
    (methods / "plain.yaml").unlink()
    report = run_suite(methods, benchmarks, EvalSettings(results_dir=tmp_path / "results"), index="faiss-hnsw")
    assert report.outcomes == []
    assert [str(skip) for skip in report.skipped] == [
        "skipped fused on shapes-small: --index faiss-hnsw cannot rank this run: the method fuses two similarity "
        "matrices, which no single index holds; use --index exact"
    ]


def test_an_exact_spec_leaves_the_run_key_alone():
    assert IndexSpec().key is None and parse_index("faiss-flat").key is None
    assert _shapes().index.name == "exact"
