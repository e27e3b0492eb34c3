"""``cirbench verify``: rescore stored results from their rankings and the annotations, and say which differ.

Why: a digest proves a result file is the one cirbench wrote, not that its numbers are right; a file edited and
re-sealed, or annotations changed since, only show when the stored rankings are scored again. Each result gets one
verdict: ``ok``, ``differs`` (which metrics, stored against rescored), ``damaged`` (its digest or its rankings' sha256
does not match, or it does not read) or ``not checkable`` (no local labels or data here: why). Exit 0 when every
checkable result is ok, 1 when any differs or is damaged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cirbench.commands import app

VERDICTS = ("ok", "differs", "damaged", "not checkable")


def selected(results_dir: Path, runs: list[str]) -> list[Path]:
    """Result files: every one under ``results_dir/runs``, or those named by path or run key (a unique prefix).
    Keys are matched on file names (``...--<key>.json``), so one damaged file never hides the others."""
    from cirbench.errors import ResultError
    from cirbench.results import result_files, run_prefix

    every = result_files(results_dir)
    if not runs and not every:
        raise ResultError(f"no result files under {Path(results_dir) / 'runs'}; give --results-dir or result files")
    if not runs:
        return every
    out: list[Path] = []
    for run in runs:
        if run and Path(run).is_file():
            out.append(Path(run))
            continue
        run = run_prefix(run)
        matches = [p for p in every if p.name[: -len(".json")].rsplit("--", 1)[-1].startswith(run)]
        if len(matches) != 1:
            found = "no result" if not matches else f"{len(matches)} results"
            raise ResultError(f"{found} with run key {run!r} under {Path(results_dir) / 'runs'}; give a file or key")
        out.append(matches[0])
    return list(dict.fromkeys(out))


def verdict(path: Path, root: Path | None) -> tuple[str, str]:
    """(verdict, detail) of one result file."""
    from cirbench.errors import IntegrityError, ResultError, ScoringError, UserError
    from cirbench.results import read_result
    from cirbench.scoring import differing_metrics, rescore

    try:
        result = read_result(path)
    except (IntegrityError, ResultError) as error:
        return "damaged", str(error)
    try:
        rescored = rescore(result, root)
    except IntegrityError as error:
        return "damaged", str(error)
    except ScoringError as error:
        return "differs", f"the stored rankings do not score against the annotations ({error})"
    except UserError as error:
        return "not checkable", str(error)
    differ = differing_metrics(result.metrics, rescored)
    if differ:
        return "differs", "; ".join(differ)
    return "ok", f"{len(result.metrics)} metrics equal ({result.label})"


@app.command("verify")
def verify_command(
    runs: Annotated[list[str] | None, typer.Argument(help="Result files or run keys (default: every result).")] = None,
    results_dir: Annotated[Path, typer.Option("--results-dir", help="Folder holding runs/.")] = Path("results"),
    root: Annotated[
        Path | None, typer.Option("--root", help="Data folder to use instead of the one each run recorded.")
    ] = None,
) -> None:
    """Rescore every stored result from its rankings and the annotations; exit 1 if any differs or is damaged."""
    from cirbench.errors import UsageError, shown
    from cirbench.evaluation.evaluator import keep_splits

    if root is not None and not root.is_dir():  # else every result would be "not checkable" and the exit 0
        raise UsageError(f"--root {shown(str(root))} is not a folder: give the data folder of the runs to verify")
    paths = selected(results_dir, list(runs or []))
    counts = dict.fromkeys(VERDICTS, 0)
    with keep_splits():
        for path in paths:
            state, detail = verdict(path, root)
            counts[state] += 1
            typer.echo(f"{state}: {path}: {detail}")
    summary = ", ".join(f"{counts[v]} {v}" for v in VERDICTS)
    typer.echo(f"verified {len(paths)} result(s) under {results_dir / 'runs'}: {summary}")
    if counts["differs"] or counts["damaged"]:
        raise typer.Exit(1)
