"""Benchmark: `cirbench eval` in one process against `torchrun --nproc_per_node N` (gloo on CPU), same metrics.

Every run is a fresh process tree with its own empty feature cache (so each one encodes the gallery) and its own
results folder; the script prints wall times, the encode/rank timings from the result files, and whether the
metrics and the stored rankings are identical to the single process's.

Run: python perf/distributed_eval.py --backbone ViT-B-32:random --renders 1 --queries 40
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="ViT-B-32:random")
    parser.add_argument("--method", default="image+text")
    parser.add_argument("--renders", type=int, default=1)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per process)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cirbench-dist-"))
    base = {**os.environ, "CIRBENCH_CACHE": str(work / "render-cache")}
    eval_args = ["eval", "-m", args.method, "-b", args.backbone, "--benchmark", "shapes", "--batch-size"]
    eval_args += [str(args.batch_size), "-p", f"renders={args.renders}", "-p", f"queries_per_style={args.queries}"]
    eval_args += ["--device", args.device]
    # Render the shapes gallery once, outside the timings (an evaluation with --limit 1 of the tiny backbone).
    run([sys.executable, "-m", "cirbench", *eval_args[:4], "cirbench-tiny:random", *eval_args[5:], "--limit", "1",
         "--results-dir", str(work / "warm"), "--no-cache"], base)  # fmt: skip
    cases = [
        ("1 process, 1 thread", 1, "1"),
        ("1 process, 2 threads", 1, "2"),
        (f"torchrun {args.nproc} processes, 1 thread each", args.nproc, "1"),
    ]
    rows = []
    for label, nproc, threads in cases:
        env = {**base, "OMP_NUM_THREADS": threads}
        out = work / label.replace(" ", "_").replace(",", "")
        launcher = [sys.executable, "-m", "cirbench"]
        if nproc > 1:
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
            launcher += ["-m", "cirbench"]
        # The feature cache goes in a folder of its own per case (the shapes renders are shared): nothing is reused.
        env["CIRBENCH_CACHE"] = str(out / "cache")
        (out / "cache").mkdir(parents=True)
        (out / "cache" / "shapes").symlink_to(work / "render-cache" / "shapes")
        wall = run([*launcher, *eval_args, "--results-dir", str(out / "results")], env)
        (result,) = (out / "results").rglob("*--*[0-9a-f].json")
        record = json.loads(result.read_text())
        rankings = json.loads(gzip.decompress(result.with_name(result.stem + ".rankings.json.gz").read_bytes()))
        rows.append((label, wall, record, rankings))
    first = rows[0]
    print(f"{args.method} on shapes (renders={args.renders}, {args.queries} queries per style), {args.backbone}")
    print("| run | wall | gallery encode | query encode | rank | metrics = 1 process | rankings = 1 process |")
    print("|---|---|---|---|---|---|---|")
    for label, wall, record, rankings in rows:
        timing = record["timing"]
        print(
            f"| {label} | {wall:.1f} s | {timing['gallery_encode_s']:.1f} s | {timing['query_encode_s']:.2f} s | "
            f"{timing['rank_s']:.3f} s | {record['metrics'] == first[2]['metrics']} | {rankings == first[3]} |"
        )
    print(f"main metric {first[2]['main_metric']} = {first[2]['metrics'][first[2]['main_metric']]}; "
          f"gallery {first[2]['benchmark']['gallery_size']} images; world sizes "
          f"{[r[2]['run_settings']['world_size'] for r in rows]}")  # fmt: skip


if __name__ == "__main__":
    main()
