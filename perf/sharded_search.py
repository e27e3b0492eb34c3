"""Benchmark: a gallery larger than one process, in one run. Exact top-50 of Q queries over an N x D float32 gallery
(default 5.6M x 768, M-BEIR's union pool: 16 GiB) written first as a memory-mapped feature cache (``features.npy``):

- ``bare``: the bare product queries x gallery^T, read block by block from the memmap, no top-k (the floor), all
  threads of one process;
- ``sharded``: ``torchrun --nproc_per_node P`` (gloo), each rank holding its contiguous shard in RAM (the rows it
  would have encoded), ranking every query there (``cirbench.evaluation.sharded.rank_sharded``), rank 0 merging;
  one thread per rank. Wall time of the ranking and each rank's peak RSS;
- ``streamed``: one process, ``topk_streamed`` over ``GalleryRows`` on the memmap (what ``cirbench eval`` does on
  one process): peak RSS and time;
- ``faiss-ivfpq``, ``faiss-sq8`` on the first 1M rows and on all N: build, search, memory, recall@50 against exact
  (``cirbench.search.build_compressed``, trained on a sample, filled a block at a time).

Every case runs in a fresh process, so each peak RSS (``ru_maxrss``) is its own. The sharded top-50 is checked to be
bitwise the streamed one. The gallery is clustered like image features (as ``perf/approx_search.py``). The script
checks the disk first (``df -h``) and refuses to start when the gallery would not fit.

Run:  python perf/sharded_search.py                                   # N = 5.6M, 1,000 queries
      python perf/sharded_search.py --n 100000 --queries 200 --ivf-sizes 100000   # a smoke run
Prints one JSON summary (also written to DIR/summary.json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WRITE_BLOCK = 65_536


def peak_mib() -> float:
    """This process's peak resident memory: VmHWM (Linux), which belongs to the process's own memory map, not
    ``ru_maxrss``, which a child started by fork + exec inherits from its parent (the parent that wrote a 17 GiB
    gallery would make every case report 17 GiB)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_gallery(folder: Path, n: int, dim: int, queries: int, seed: int = 0) -> Path:
    """``features.npy`` (float32, unnormalised as the cache stores it) written block by block, and the queries."""
    path = folder / f"gallery_{n}x{dim}" / "features.npy"
    if path.is_file() and path.with_name("queries.npy").is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((10_000, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, WRITE_BLOCK):
        rows = min(WRITE_BLOCK, n - start)
        block = centres[rng.integers(0, len(centres), rows)]
        block += rng.standard_normal((rows, dim), dtype=np.float32) / np.sqrt(dim)
        out[start : start + rows] = block * rng.uniform(0.5, 2.0, (rows, 1)).astype(np.float32)  # norms vary
    out.flush()
    del out
    os.replace(path.with_suffix(".tmp.npy"), path)
    gallery = np.load(path, mmap_mode="r")
    q = np.asarray(gallery[np.sort(rng.choice(n, queries, replace=False))], dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q += 0.5 * rng.standard_normal(q.shape, dtype=np.float32) / np.sqrt(dim)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    np.save(path.with_name("queries.npy"), q)
    return path


def check_disk(folder: Path, n: int, dim: int) -> dict:
    """Refuse to start when the gallery (and 2 GiB to spare) does not fit where it is written."""
    folder.mkdir(parents=True, exist_ok=True)
    need = n * dim * 4 + 2 * 2**30
    existing = folder / f"gallery_{n}x{dim}" / "features.npy"
    if existing.is_file():
        need = 0
    free = shutil.disk_usage(folder).free
    df = subprocess.run(["df", "-h", str(folder)], capture_output=True, text=True).stdout.strip()
    print(df, file=sys.stderr)
    if free < need:
        sys.exit(f"refusing to start: {folder} has {free / 2**30:.1f} GiB free, the gallery needs {need / 2**30:.1f}")
    return {"free_gib": round(free / 2**30, 1), "needed_gib": round(need / 2**30, 1)}


# ------------------------------------------------------------------------------------------------ one case each


def case_bare(args: argparse.Namespace) -> dict:
    import torch

    gallery = np.load(args.gallery, mmap_mode="r")
    queries = torch.from_numpy(np.load(Path(args.gallery).with_name("queries.npy")))
    start = time.perf_counter()
    for a in range(0, len(gallery), args.block):
        block = torch.from_numpy(np.array(gallery[a : a + args.block], dtype=np.float32))
        for q in range(0, len(queries), 256):
            queries[q : q + 256] @ block.T
    return {"seconds": time.perf_counter() - start, "peak_rss_mib": peak_mib(), "threads": torch.get_num_threads()}


def case_streamed(args: argparse.Namespace) -> dict:
    import torch

    from cirbench.feature_blocks import GalleryRows
    from cirbench.retrieval import product, topk_streamed

    gallery = np.load(args.gallery, mmap_mode="r")
    queries = torch.from_numpy(np.load(Path(args.gallery).with_name("queries.npy")))
    rows = GalleryRows(gallery, np.arange(len(gallery), dtype=np.int64))
    start = time.perf_counter()
    idx, vals, _ = topk_streamed(rows, lambda a, b, block: product(queries[a:b], block), len(queries), args.k)
    seconds = time.perf_counter() - start
    np.savez(Path(args.out).with_suffix(".top.npz"), idx=idx.numpy(), vals=vals.numpy())
    return {"seconds": seconds, "peak_rss_mib": peak_mib(), "threads": torch.get_num_threads()}


def case_sharded(args: argparse.Namespace) -> dict:
    """One torchrun rank: its shard copied into RAM (what it encoded), then the sharded ranking."""
    import torch

    from cirbench.evaluation.distributed import Shard, joined, shards
    from cirbench.evaluation.sharded import rank_sharded
    from cirbench.features import batch_starts
    from cirbench.retrieval import product

    gallery = np.load(args.gallery, mmap_mode="r")
    queries = torch.from_numpy(np.load(Path(args.gallery).with_name("queries.npy")))
    n = len(gallery)
    with joined("cpu") as (group, _):
        bounds = shards(batch_starts(n, 64), n, group.world)
        a, b = bounds[group.rank]
        start = time.perf_counter()
        local = read_rows(Path(args.gallery), gallery.offset, a, b, gallery.shape[1])  # reads, not the map
        load_s = time.perf_counter() - start
        del gallery
        shard = Shard([], a, b, local, bounds)
        torch.distributed.barrier()
        start = time.perf_counter()
        score = lambda qa, qb, block: product(queries[qa:qb], block)  # noqa: E731
        found = rank_sharded(
            group, shard, np.arange(n, dtype=np.int64), score, len(queries), args.k, None, None, "cpu", "scores"
        )
        seconds = time.perf_counter() - start
        record = {
            "rank": group.rank,
            "rows": b - a,
            "shard_mib": round(local.nbytes / 2**20, 1),
            "load_s": load_s,
            "seconds": seconds,
            "peak_rss_mib": peak_mib(),
            "threads": torch.get_num_threads(),
        }
        if found is not None:
            np.savez(Path(args.out).with_suffix(".top.npz"), idx=found[0].numpy(), vals=found[1].numpy())
        Path(f"{args.out}.rank{group.rank}.json").write_text(json.dumps(record))
    return record


def read_rows(path: Path, header: int, a: int, b: int, dim: int) -> np.ndarray:
    """Rows ``a:b`` of a float32 ``.npy`` (data from byte ``header``) read into RAM with plain reads, so no mapped
    page is left resident: the rank holds its shard only."""
    out = np.empty((b - a, dim), np.float32)
    with open(path, "rb") as handle:
        handle.seek(header + a * dim * 4)
        handle.readinto(memoryview(out).cast("B"))
    return out


def case_compressed(args: argparse.Namespace) -> dict:
    import torch

    from cirbench.feature_blocks import GalleryRows
    from cirbench.retrieval import product, topk_streamed
    from cirbench.search import build_compressed, faiss_topk, parse_index

    gallery = np.load(args.gallery, mmap_mode="r")
    n = min(args.size, len(gallery))
    queries = np.load(Path(args.gallery).with_name("queries.npy"))
    rows = GalleryRows(gallery[:n], np.arange(n, dtype=np.int64))
    index = parse_index(args.index, dict(p.split("=", 1) for p in args.param))
    start = time.perf_counter()
    built, params = build_compressed(rows, index, "gallery")
    build_s = time.perf_counter() - start
    after_build = peak_mib()
    start = time.perf_counter()
    found, _ = faiss_topk(built, queries, args.k, None, n)
    search_s = time.perf_counter() - start
    truth = Path(args.gallery).with_name(f"truth{n}.npy")
    if truth.is_file():
        exact = np.load(truth)
    else:
        q = torch.from_numpy(queries)
        exact = topk_streamed(rows, lambda a, b, block: product(q[a:b], block), len(q), args.k)[0].numpy()
        np.save(truth, exact)
    hits = sum(len(set(t.tolist()) & set(f)) for t, f in zip(exact, found, strict=True))
    import faiss

    return {
        "index": args.index,
        "n": n,
        "params": params,
        "build_s": build_s,
        "search_s": search_s,
        "index_mib": round(faiss.serialize_index(built).nbytes / 2**20, 1),
        "peak_rss_mib_after_build": after_build,
        "peak_rss_mib": peak_mib(),
        "recall@50": hits / exact.size,
        "threads": torch.get_num_threads(),
    }


CASES = {"bare": case_bare, "streamed": case_streamed, "sharded": case_sharded, "compressed": case_compressed}


# ------------------------------------------------------------------------------------------------ the driver


def fresh(script_args: list[str], out: Path, threads: int, nproc: int = 0) -> dict | list:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(Path(__file__).parents[1])}
    launch = [sys.executable]
    if nproc:
        launch += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    start = time.perf_counter()
    done = subprocess.run([*launch, __file__, *script_args, "--out", str(out)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"failed: {' '.join(script_args)}\n{done.stderr[-3000:]}")
    if nproc:
        return [json.loads(Path(f"{out}.rank{r}.json").read_text()) for r in range(nproc)] + [{"process_wall_s": wall}]
    return {**json.loads(out.read_text()), "process_wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5_600_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--nproc", type=int, default=2, help="torchrun processes for the sharded case")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of the one-process cases")
    parser.add_argument("--ivf-sizes", default="1000000,N", help="gallery sizes for the compressed indexes")
    parser.add_argument("--cases", default="bare,sharded,streamed,faiss-ivfpq,faiss-sq8")
    parser.add_argument("--param", action="append", default=[], help="--index-param for faiss-ivfpq, KEY=VALUE")
    parser.add_argument("--dir", default="/tmp/cirbench-sharded-search")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # one case, in a fresh process
    parser.add_argument("--gallery", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    parser.add_argument("--block", type=int, default=65536, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        record = CASES[args.case](args)
        if args.case != "sharded":
            Path(args.out).write_text(json.dumps(record))
        return
    folder = Path(args.dir)
    summary: dict = {
        "n": args.n,
        "dim": args.dim,
        "queries": args.queries,
        "k": args.k,
        "disk": check_disk(folder, args.n, args.dim),
        "cpus": os.cpu_count(),
        "load_average_start": os.getloadavg(),
    }
    start = time.perf_counter()
    gallery = make_gallery(folder, args.n, args.dim, args.queries)
    summary["gallery"] = {
        "path": str(gallery),
        "gib": round(gallery.stat().st_size / 2**30, 2),
        "write_s": round(time.perf_counter() - start, 1),
    }
    base = ["--gallery", str(gallery), "--k", str(args.k)]
    cases = args.cases.split(",")
    if "bare" in cases:
        summary["bare"] = fresh([*base, "--case", "bare"], folder / "bare.json", args.threads)
    if "sharded" in cases:
        summary["sharded"] = fresh([*base, "--case", "sharded"], folder / "sharded.json", 1, args.nproc)
    if "streamed" in cases:
        summary["streamed"] = fresh([*base, "--case", "streamed"], folder / "streamed.json", args.threads)
    if "sharded" in cases and "streamed" in cases:
        one, many = (np.load(folder / f"{name}.top.npz") for name in ("streamed", "sharded"))
        summary["sharded_equals_streamed"] = bool(
            np.array_equal(one["idx"], many["idx"]) and np.array_equal(one["vals"], many["vals"])
        )
    if "bare" in cases and "sharded" in cases:
        ranking = max(r["seconds"] for r in summary["sharded"] if "seconds" in r)
        summary["sharded_over_bare"] = round(ranking / summary["bare"]["seconds"], 3)
    sizes = sorted({args.n if s == "N" else min(int(s), args.n) for s in args.ivf_sizes.split(",")})
    for name in ("faiss-ivfpq", "faiss-sq8"):
        if name in cases:
            extra = [a for p in args.param for a in ("--param", p)] if name == "faiss-ivfpq" else []
            summary[name] = [
                fresh(
                    [*base, "--case", "compressed", "--index", name, "--size", str(n), *extra],
                    folder / f"{name}_{n}.json",
                    args.threads,
                )
                for n in sizes
            ]
    summary["load_average_end"] = os.getloadavg()
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
