"""Benchmark: `eval` of the existing methods on the shapes world, to compare the method interface of two commits.

Issue 20 moved every method onto one typed interface and the engine onto one ranking path; this measures that the
existing methods lost no speed. The gallery cache is warmed first, then each method is evaluated ``--repeats``
times (overwrite, nothing reused) and the fastest query-encoding + ranking time and total time are printed as JSON.
Run it from two checkouts (the commit before and after) alternately, with one torch thread (``--threads 1``, or
OMP_NUM_THREADS=1: the rule of ``cirbench/threads.py``):

    OMP_NUM_THREADS=1 python perf/interface_speed.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from cirbench.evaluation import EvalSettings, RunRequest, evaluate, resolve
from cirbench.threads import HELP as THREADS_HELP
from cirbench.threads import use as use_threads

METHODS = ("image-only", "text-only", "image+text", "slerp", "fusion-sum", "fusion-product")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backbone", default="shapes-clip:v2")
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    args = parser.parse_args()
    print(use_threads(args.threads).line())  # the one rule (cirbench/threads.py)
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp)
        for method in METHODS:
            request = RunRequest(method=method, backbone=args.backbone, benchmark="shapes", split="test")
            evaluate(resolve(request), EvalSettings(results_dir=results, overwrite=True))  # warm the gallery cache
            best_rank = best_total = float("inf")
            for _ in range(args.repeats):
                result = evaluate(resolve(request), EvalSettings(results_dir=results, overwrite=True)).result
                timing = result.timing
                best_rank = min(best_rank, timing["query_encode_s"] + timing["rank_s"])
                best_total = min(best_total, timing["total_s"])
            out[method] = {
                "queries": result.n_queries,
                "query_and_rank_s": round(best_rank, 4),
                "total_s": round(best_total, 4),
                "main_metric": result.metrics[result.main_metric],
            }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
