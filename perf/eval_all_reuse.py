"""Benchmark: `cirbench eval --all` over results that are already finished (every run is reused).

Why: reusing a result should cost reading annotations and hashing inputs, never loading a backbone or a
checkpoint. Runs the CLI in a fresh process each time (imports included, as a user sees it) from a project folder
whose cards point at finished results, and reports the median wall time.

Run (after `cirbench demo` has written the shapes results in the project folder):
    python perf/eval_all_reuse.py --project . --results-dir results --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--project", type=Path, default=Path("."), help="folder holding methods/ and benchmarks/")
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch/OMP threads of the timed process")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    command = [sys.executable, "-m", "cirbench", "eval", "--all", "--results-dir", str(args.results_dir.resolve())]
    times, output = [], ""
    for _ in range(args.repeat):
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=args.project, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            sys.exit(f"eval --all failed ({proc.returncode}):\n{output[-3000:]}")
    reused = output.count("reused")
    print(
        f"eval --all over finished results: median {statistics.median(times):.2f} s over {args.repeat} runs "
        f"(min {min(times):.2f}, max {max(times):.2f}); {reused} results reused in the last run"
    )
    print("last run's output tail:\n" + "\n".join(output.strip().splitlines()[-8:]))


if __name__ == "__main__":
    main()
