"""Benchmark: searching a web-size gallery. 1,000 queries over a memory-mapped synthetic gallery of 1M x 768 fp16
features, with cirbench's exact chunked top-K and each faiss index behind ``--index`` (``cirbench.search``).

Each index runs in a fresh process, so its peak RSS (``ru_maxrss``) is its own. The exact run writes the true top-50
that the others' recall@50 is measured against. The gallery is clustered like real image features: 10,000 random
unit centres, each row a centre plus Gaussian noise of the same norm, normalised; a query is a gallery row plus
half that noise, normalised (its neighbours are its cluster, about 100 rows).

Run:  python perf/approx_search.py                                   # every index, gallery written once to /tmp
      python perf/approx_search.py --indexes faiss-hnsw --subset 100000  # one index on the first 100k rows
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BLOCK = 50_000


def make_gallery(path: Path, n: int, dim: int, queries: int, seed: int = 0) -> None:
    """The fp16 gallery (written block by block into a .npy memmap) and the float32 queries beside it."""
    if path.is_file() and path.with_suffix(".queries.npy").is_file():
        return
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((10_000, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, dim))
    for start in range(0, n, BLOCK):
        rows = min(BLOCK, n - start)
        block = centres[rng.integers(0, len(centres), rows)]
        block += rng.standard_normal((rows, dim), dtype=np.float32) / np.sqrt(dim)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + rows] = block.astype(np.float16)
    out.flush()
    picks = rng.choice(n, queries, replace=False)
    q = np.asarray(out[np.sort(picks)], dtype=np.float32)
    q += 0.5 * rng.standard_normal(q.shape, dtype=np.float32) / np.sqrt(dim)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    np.save(path.with_suffix(".queries.npy"), q)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def measure(args: argparse.Namespace) -> dict:
    """One index in this process: load (memmap -> float32), build, search; times, memory, recall@50."""
    import torch

    from cirbench.retrieval import topk_chunked
    from cirbench.search import build_index, faiss_topk, parse_index

    gallery_mm = np.load(args.gallery, mmap_mode="r")
    n = args.subset or len(gallery_mm)
    queries = np.load(Path(args.gallery).with_suffix(".queries.npy"))
    start = time.perf_counter()
    gallery = np.empty((n, gallery_mm.shape[1]), np.float32)
    for a in range(0, n, BLOCK):  # fp16 on disk -> float32 in memory, as the feature cache gives cirbench
        gallery[a : a + BLOCK] = gallery_mm[a : min(a + BLOCK, n)]
    load_s = time.perf_counter() - start
    before = current_mib()
    record: dict = {"index": args.index, "n": n, "dim": gallery.shape[1], "queries": len(queries)}
    truth_path = Path(args.gallery).with_suffix(f".truth{n}.npy")
    if args.index == "exact":
        start = time.perf_counter()
        idx, _ = topk_chunked(torch.from_numpy(queries), torch.from_numpy(gallery), args.k)
        record.update(build_s=0.0, query_s=time.perf_counter() - start)
        found = idx.numpy()
        np.save(truth_path, found)
    else:
        params = dict(item.split("=", 1) for item in args.param)
        spec = parse_index(args.index, params)
        start = time.perf_counter()
        built, used = build_index(gallery, spec)
        record.update(build_s=time.perf_counter() - start, params=used)
        del gallery  # faiss holds its own copy; what remains is what a search needs
        start = time.perf_counter()
        rows, _ = faiss_topk(built, queries, args.k, None, n)
        record["query_s"] = time.perf_counter() - start
        found = np.array([r + [-1] * (args.k - len(r)) for r in rows])
    if truth_path.is_file():
        truth = np.load(truth_path)
        hits = sum(len(set(t.tolist()) & set(f.tolist())) for t, f in zip(truth, found, strict=True))
        record["recall@50"] = hits / truth.size
    record.update(load_s=load_s, rss_after_load_mib=before, peak_rss_mib=peak_mib())
    return record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gallery", default="/tmp/cirbench_gallery_1m_768_fp16.npy")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--indexes", default="exact,faiss-flat,faiss-ivf,faiss-hnsw")
    parser.add_argument("--subset", type=int, default=0, help="Only the first N gallery rows (0: all).")
    parser.add_argument("--index", default=None, help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--param", action="append", default=[], help="KEY=VALUE for the index (repeatable).")
    args = parser.parse_args()
    if args.index:
        print(json.dumps(measure(args)), flush=True)
        return
    start = time.perf_counter()
    make_gallery(Path(args.gallery), args.n, args.dim, args.queries)
    print(f"gallery {args.gallery}: {time.perf_counter() - start:.1f} s to make or find", file=sys.stderr)
    for name in args.indexes.split(","):
        command = [sys.executable, __file__, "--gallery", args.gallery, "--index", name, "--k", str(args.k)]
        command += ["--subset", str(args.subset)] + [f"--param={p}" for p in args.param if name != "exact"]
        done = subprocess.run(command, capture_output=True, text=True)
        print(done.stdout.strip() or done.stderr.strip()[-2000:], flush=True)


if __name__ == "__main__":
    main()
