"""Streamed and sharded exact search: the same top-k bits, tie order and full-ranking positions as one ranking of
the whole gallery in memory, on one process (blocks read from the cache's memory map) and on 2 gloo processes."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cirbench.feature_blocks import GalleryRows, store_feature_blocks
from cirbench.features import cached_features
from cirbench.retrieval import (
    TensorBlocks,
    clipped_k,
    count_above,
    merge_topk,
    product,
    rank_with_positives,
    topk_chunked,
    topk_scored,
    topk_streamed,
)
from cirbench.search import parse_index, search_gallery

sys.path.insert(0, str(Path(__file__).parent))
from sharded_worker import case  # noqa: E402

WORKER = Path(__file__).parent / "sharded_worker.py"


def _embed(queries):
    return lambda a, b, block: product(queries[a:b], block)


def _reference(gallery, image, text, exclude, wanted, fused):
    """One process, the whole normalised gallery in memory: today's chunked top-k and stable full sort."""
    g = F.normalize(torch.from_numpy(gallery), dim=-1)
    if fused:
        rows = lambda a, b: image[a:b] @ g.T + text[a:b] @ g.T  # noqa: E731
    else:
        rows = lambda a, b: image[a:b] @ g.T  # noqa: E731
    idx, vals, ranks = rank_with_positives(rows, len(image), len(g), 50, wanted, exclude)
    top_idx, top_vals = topk_scored(rows, len(image), len(g), 50, exclude)
    assert torch.equal(top_vals, vals)  # the stable sort and torch.topk give the same scores
    return idx, vals, ranks


@pytest.mark.parametrize(("n", "block_rows"), [(120, 1), (300, 2), (300, 7), (3001, 256), (3001, 1 << 16)])
def test_streamed_topk_is_the_in_memory_topk(n, block_rows, one_thread):
    gallery, image, _, exclude, wanted = case(n, 16, 300)
    g = F.normalize(torch.from_numpy(gallery), dim=-1)
    k = clipped_k(50, len(g), exclude)
    ref_idx, ref_vals, ref_ranks = _reference(gallery, image, None, exclude, wanted, fused=False)
    idx, vals, captured = topk_streamed(
        TensorBlocks(g), _embed(image), 300, k, exclude, capture=wanted, block_rows=block_rows
    )
    assert torch.equal(vals, ref_vals) and torch.equal(idx, ref_idx)  # ties (rows n/2 to n/2 + 49 = row 7): lower first
    assert all(e is None or e not in row for e, row in zip(exclude, idx.tolist(), strict=True))
    targets = [[(j, c[j]) for j in w] for w, c in zip(wanted, captured, strict=True)]
    ranks = count_above(TensorBlocks(g), _embed(image), 300, targets, exclude, block_rows=block_rows)
    assert [sorted(r) for r in ranks] == ref_ranks
    plain_idx, plain_vals = topk_chunked(image, g, 50, exclude=exclude)  # torch.topk: same scores, ties in any order
    assert torch.equal(plain_vals, vals)


def test_shards_merged_are_the_whole_gallery(one_thread):
    gallery, image, text, exclude, wanted = case(2000, 8, 50)
    g = F.normalize(torch.from_numpy(gallery), dim=-1)
    k = clipped_k(50, len(g), exclude)
    score = lambda a, b, block: product(image[a:b], block) + product(text[a:b], block)  # noqa: E731
    cuts = [0, 3, 4, 999, 2000]  # shards of 3, 1, 995 and 1001 rows
    parts, counts = [], []
    for a, b in zip(cuts, cuts[1:], strict=False):
        idx, vals, _ = topk_streamed(TensorBlocks(g[a:b], a), score, 50, k, exclude, block_rows=500)
        parts.append((idx, vals))
    ref_idx, ref_vals, ref_ranks = _reference(gallery, image, text, exclude, wanted, fused=True)
    idx, vals = merge_topk(parts[::-1], k)  # in any order
    assert torch.equal(idx, ref_idx) and torch.equal(vals, ref_vals)
    _, _, captured = topk_streamed(TensorBlocks(g), score, 50, k, exclude, capture=wanted)
    targets = [[(j, c[j]) for j in w] for w, c in zip(wanted, captured, strict=True)]
    for a, b in zip(cuts, cuts[1:], strict=False):
        counts.append(count_above(TensorBlocks(g[a:b], a), score, 50, targets, exclude))
    assert [sorted(sum(c[i][j] for c in counts) for j in range(4)) for i in range(50)] == ref_ranks


def test_gallery_rows_read_the_cache_memmap_in_blocks(tiny_backbone, one_thread):
    """A finished cache entry (written whole, or from blocks: the same bytes) is searched from its memory map a block
    at a time, with the gallery in any order; the result is the in-memory search's."""
    from cirbench.benchmarks.base import ImageRef

    rng = np.random.default_rng(0)
    features = rng.standard_normal((700, tiny_backbone.image_embed_dim)).astype(np.float32)
    refs = [ImageRef(f"k{i}", None) for i in range(700)]
    store_feature_blocks(tiny_backbone, refs, features.shape[1], [features[:300], features[300:]], "clip", "rgb", "x")
    entry = cached_features(tiny_backbone, refs, "clip", "rgb", "x")
    assert isinstance(entry.features, np.memmap) and np.array_equal(entry.features, features)
    one_process = io.BytesIO()
    np.save(one_process, features)  # what one process's entry holds (``io.atomic_write_npy``)
    assert Path(entry.features.filename).read_bytes() == one_process.getvalue()  # the same entry, byte for byte
    order = rng.permutation(700)[:650]
    queries = F.normalize(torch.from_numpy(rng.standard_normal((40, features.shape[1])).astype(np.float32)), dim=-1)
    exclude = [int(i * 13 % 650) for i in range(40)]
    whole = F.normalize(torch.from_numpy(features[order]), dim=-1)
    expected = search_gallery(queries, whole, 50, exclude)
    streamed = search_gallery(queries, GalleryRows(entry.features, order), 50, exclude)
    assert streamed.indices == expected.indices and streamed.scores == expected.scores


@pytest.mark.parametrize("name", ["faiss-ivfpq", "faiss-sq8"])
def test_compressed_indexes_record_recall_against_exact(name, one_thread):
    pytest.importorskip("faiss")
    gallery, image, _, exclude, _ = case(3000, 16, 60)
    g = F.normalize(torch.from_numpy(gallery), dim=-1)
    params = {"nlist": 16, "nprobe": 16, "m": 4} if name == "faiss-ivfpq" else {}
    index = parse_index(name, params)
    found = search_gallery(image, TensorBlocks(g), 50, exclude, index)
    exact = search_gallery(image, g, 50, exclude)
    hits = sum(len(set(a) & set(b)) for a, b in zip(found.indices, exact.indices, strict=True))
    assert found.recall_total == 60 * 50 and found.recall_hits == hits  # recall@50 against exact, every query
    assert all(e not in row for e, row in zip(exclude, found.indices, strict=True) if e is not None)
    assert hits / found.recall_total > (0.9 if name == "faiss-sq8" else 0.3)
    assert index.key["name"] == name  # approximate: in the run key


def _torchrun(tmp_path: Path, n: int, dim: int, queries: int, nodes: bool = False) -> dict:
    out = tmp_path / "out.npz"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    script = [str(WORKER), str(out), str(n), str(dim), str(queries)]
    launch = [sys.executable, "-m", "torch.distributed.run"]
    if not nodes:
        done = subprocess.run(
            [*launch, "--standalone", "--nproc_per_node", "2", *script],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    else:  # the documented two-node rendezvous: one launcher per "node", each with one process
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        rdzv = [
            "--nnodes",
            "2",
            "--nproc_per_node",
            "1",
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            f"127.0.0.1:{port}",
            "--rdzv-id",
            "sharded-test",
        ]
        nodes_ = [
            subprocess.Popen(
                [*launch, *rdzv, *script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        for p in nodes_:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err[-3000:]
    return dict(np.load(out))


@pytest.mark.parametrize("nodes", [False, True], ids=["2-processes", "2-nodes-c10d"])
def test_two_gloo_processes_give_one_process_bits_on_a_100k_gallery(tmp_path, nodes, one_thread):
    """Shards of 48,999 and 51,001 rows (rank 0 borrows 16,537 rows to complete its block): the top-50 indices and
    scores, the full-ranking positions of every positive, for one embedding and for fused scores, and the rows
    candidate lists and subsets get, equal one process's."""
    n, dim, queries = 100_000, 16, 64
    got = _torchrun(tmp_path, n, dim, queries, nodes)
    assert int(got["world"]) == 2
    gallery, image, text, exclude, wanted = case(n, dim, queries)
    for fused in (False, True):
        name = "fused" if fused else "embed"
        idx, vals, ranks = _reference(gallery, image, text, exclude, wanted, fused)
        assert np.array_equal(got[f"{name}_idx"], idx.numpy())
        assert np.array_equal(got[f"{name}_vals"], vals.numpy())  # bitwise
        assert got[f"{name}_ranks"].tolist() == ranks
    cut = n // 2 - 1001
    assert np.array_equal(got["rows"], gallery[[3, n - 2, cut]])


@pytest.mark.slow
def test_torchrun_eval_of_every_sharded_rule_equals_one_process(tmp_path, monkeypatch):
    """`torchrun --nproc_per_node 2 -m cirbench eval --all` over CIRR (subsets), GeneCIS (candidate lists), FreeDom
    LTLL and Pic2Word ImageNet-R (full-ranking positions), each with one embedding method and one score-fusion
    method: the same results files (metrics, top-50 and scores) as one process. Gallery blocks of 3 rows, so both
    ranks own blocks and borrow rows across the shards' border; the features are cached from blocks, byte for byte
    the entry one process writes."""
    import gzip
    import json

    from cirr_support import make_cirr
    from test_domain_benchmarks import make_ltll, make_pic2word_imagenet_r
    from test_training_free import make_genecis

    from cirbench.evaluation import EvalSettings
    from cirbench.evaluation.suite import run_suite

    methods, benchmarks = tmp_path / "methods", tmp_path / "benchmarks"
    methods.mkdir()
    benchmarks.mkdir()
    for name, method in (("plain", "image+text"), ("fused", "fusion-sum")):
        (methods / f"{name}.yaml").write_text(f"name: {name}\nmethod: {method}\nbackbone: cirbench-tiny:random\n")
    genecis, options = make_genecis(tmp_path)
    cards = {
        "cirr": ("cirr", "val", make_cirr(tmp_path / "CIRR"), {}),
        "genecis": ("genecis", "test", genecis, options),
        "ltll": ("freedom-ltll", "test", make_ltll(tmp_path / "FreeDom"), {}),
        "p2w": ("pic2word-imagenet-r", "test", make_pic2word_imagenet_r(tmp_path / "Pic2Word"), {}),
    }
    for name, (benchmark, split, root, opts) in cards.items():
        text = f"name: {name}\nbenchmark: {benchmark}\nsplit: {split}\nroot: {root}\noptions: {json.dumps(opts)}\n"
        (benchmarks / f"{name}.yaml").write_text(text)
    monkeypatch.setenv("CIRBENCH_BLOCK_ROWS", "3")
    single, double = tmp_path / "single", tmp_path / "double"
    report = run_suite(methods, benchmarks, EvalSettings(results_dir=single, batch_size=4))
    cache = Path(os.environ["CIRBENCH_CACHE"]) / "features"
    written = {entry.name: (entry / "features.npy").read_bytes() for entry in cache.iterdir()}
    shutil.rmtree(cache)
    assert len(report.outcomes) == 8 and not report.skipped
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    command += ["cirbench", "eval", "--all", "--methods-dir", str(methods), "--benchmarks-dir", str(benchmarks)]
    command += ["--results-dir", str(double), "--batch-size", "4"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    files = sorted(p.relative_to(single) for p in single.rglob("*.json*"))
    assert files == sorted(p.relative_to(double) for p in double.rglob("*.json*")) and len(files) == 16
    for name in files:
        if name.suffix == ".gz":
            one, two = (json.loads(gzip.decompress((root / name).read_bytes())) for root in (single, double))
            assert one == two  # top-50, subsets and scores
            continue
        one, two = (json.loads((root / name).read_text()) for root in (single, double))
        assert one["metrics"] == two["metrics"] and one["run_key"] == two["run_key"]
    assert {entry.name: (entry / "features.npy").read_bytes() for entry in cache.iterdir()} == written


@pytest.mark.parametrize(("name", "params"), [("faiss-ivfpq", {"nlist": "8", "nprobe": "8"}), ("faiss-sq8", {})])
def test_a_compressed_run_is_keyed_and_records_its_recall(name, params):
    """`cirbench eval --index faiss-ivfpq|faiss-sq8` on shapes (576 images, 80 queries): in the run key, recall@50
    against exact recorded in ``run_settings.index`` as for faiss-ivf."""
    pytest.importorskip("faiss")
    from cirbench.evaluation import EvalSettings, RunRequest, evaluate, resolve

    request = RunRequest(
        method="image+text",
        backbone="shapes-clip:v2",
        benchmark="shapes",
        protocol_options={"renders": 1, "queries_per_style": 40},
        index=name,
        index_params=params,
    )
    outcome = evaluate(resolve(request), EvalSettings(results_dir=None, batch_size=64))
    record = outcome.result.run_settings["index"]
    assert outcome.result.key_fields["index"]["name"] == name
    assert record["name"] == name and record["recall_queries"] == 80 and 0 < record["recall@50"] <= 1
    if name == "faiss-ivfpq":
        assert (record["params"]["nlist"], record["params"]["nprobe"], record["params"]["nbits"]) == (8, 8, 8)
        assert record["params"]["m"] > 0  # 0 (auto) resolved to the dimension / 8, as built


def test_torchrun_refuses_a_faiss_index_in_one_line():
    from cirbench.benchmarks.base import BenchmarkSplit
    from cirbench.errors import SearchIndexError
    from cirbench.evaluation.engine import check_index

    data = BenchmarkSplit.__new__(BenchmarkSplit)
    with pytest.raises(SearchIndexError, match="under torchrun only exact search is sharded.*use --index exact"):
        check_index(parse_index("faiss-sq8"), data, fused=False, full_ranking=False, sharded=True)
