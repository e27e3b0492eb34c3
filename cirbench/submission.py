"""``cirbench submit``: evaluation-server files from a run's stored rankings, through its benchmark.

The run is checked first (right benchmark, the split the server scores, every query ranked over the full gallery,
the protocol the server expects); then the benchmark validates the rankings against its test split (loaded from
``--root`` when given) and writes its file(s). No annotation JSON is read here: the benchmark's loader reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cirbench.benchmarks import get_benchmark
from cirbench.benchmarks.base import Benchmark
from cirbench.errors import SubmissionError
from cirbench.results import RunResult, load_rankings


def check_run(result: RunResult, bench: Benchmark) -> None:
    """Refuse a result that cannot become a submission (wrong benchmark or split, dropped queries, protocol)."""
    name, split = result.benchmark.name, result.benchmark.split
    key = result.run_key[:12]
    if name != bench.name:
        raise SubmissionError(f"run {key} is a {name} result, not {bench.name}; pick a {bench.name} run")
    if bench.server_split is not None and bench.resolve_split(split) != bench.server_split:
        wanted = bench.server_split
        raise SubmissionError(
            f"run {key} is a {bench.name} {split} result; the {bench.display_name.upper()} test server needs a "
            f"{wanted} run (evaluate with `cirbench eval --benchmark {bench.name} --split {wanted}`): "
            f"{split} rankings must never be uploaded as test predictions"
        )
    dropped, missing = result.skipped.queries_dropped, result.skipped.images_missing
    if dropped or missing:
        raise SubmissionError(
            f"run {key} was evaluated without {missing} missing images and dropped {dropped} queries "
            "(--skip-missing); a submission needs every query ranked over the full gallery: get the missing "
            "images and evaluate again"
        )
    for option, wanted in bench.server_options.items():
        used = result.benchmark.options.get(option, wanted)
        if used != wanted:
            raise SubmissionError(
                f"run {key} was evaluated with {option}={used}; the {bench.display_name} server protocol expects "
                f"{option}={wanted}: evaluate again with the default protocol"
            )


def submit(
    result: RunResult,
    benchmark: str,
    out_dir: Path,
    root: Path | None = None,
    rankings: dict[str, Any] | None = None,
) -> tuple[list[Path], list[str]]:
    """Check the run against ``benchmark``, load its rankings, validate and write the server file(s); returns
    (paths, notes). Without ``root`` the files are checked for structure and query count only (noted)."""
    from cirbench.benchmarks import BENCHMARKS

    bench = get_benchmark(benchmark)
    if not bench.has_submission:
        formats = ", ".join(b.name for b in BENCHMARKS.entries() if b.has_submission)
        raise SubmissionError(f"{bench.name} has no submission format (its metrics are computed locally); {formats} do")
    check_run(result, bench)
    rankings = rankings if rankings is not None else load_rankings(result)
    stem = result.path.name[: -len(".json")] if result.path else f"{bench.name}--{result.run_key}"
    notes: list[str] = []
    data = None
    if root is not None:
        recorded = result.benchmark.options  # the run's choices; where data lives comes from --root
        options = {o.name: recorded[o.name] for o in bench.options if o.keyed and o.name in recorded}
        data = bench.load(root, result.benchmark.split, options)
    elif bench.server_split is not None:
        notes.append(
            "validated structure and query count only; pass --root <annotations> to check query ids, "
            "references, group members and gallery ids against the test split"
        )
    paths, more = bench.write_submission(rankings, data, Path(out_dir), stem, result.benchmark.split)
    return paths, notes + more
