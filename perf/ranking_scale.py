"""Benchmark: CIRCO-size ranking (800 queries x 123,403 gallery x 768 dims) time and peak memory.

Run: python perf/ranking_scale.py [--queries 800 --gallery 123403 --dim 768 --chunk 256]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from cirbench.retrieval import topk_chunked


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=800)
    parser.add_argument("--gallery", type=int, default=123_403)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--k", type=int, default=50)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    # Fill the gallery in place, chunk by chunk, so generating it does not set the memory high-water mark.
    gallery = torch.empty(args.gallery, args.dim)
    for start in range(0, args.gallery, 8192):
        block = gallery[start : start + 8192]
        block.normal_(generator=generator)
        block.div_(block.norm(dim=-1, keepdim=True))
    queries = F.normalize(torch.randn(args.queries, args.dim, generator=generator), dim=-1)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    idx, _ = topk_chunked(queries, gallery, args.k, exclude=list(range(args.queries)), chunk_size=args.chunk)
    seconds = time.perf_counter() - start
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    full_matrix_mb = args.queries * args.gallery * 4 / 2**20
    print(f"threads={torch.get_num_threads()} queries={args.queries} gallery={args.gallery} dim={args.dim}")
    print(f"rank top-{args.k}: {seconds:.2f} s; chunk={args.chunk}")
    print(
        f"peak RSS {peak_rss:.0f} MiB; before ranking {base_rss:.0f} MiB (features + runtime); ranking added "
        f"{peak_rss - base_rss:.0f} MiB; a full score matrix alone would be {full_matrix_mb:.0f} MiB"
    )
    assert idx.shape == (args.queries, args.k)


if __name__ == "__main__":
    main()
