"""Leaderboard statistics (``cirbench leaderboard --ci``): bootstrap half-widths on run rows and the adjacent runs
a paired test cannot tell apart.

Only rows that are single runs get intervals: reported rows have no per-query rankings, and a row averaging seeds
already shows its spread over seeds. Within each benchmark, split and backbone, default-protocol runs are ordered
by the headline metric and each neighbouring pair gets a two-sided sign-flip test on the queries they share; pairs
with p >= ``alpha`` are listed as not significantly different (unadjusted: a pair is reported, not a ranking).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cirbench.errors import IntegrityError, UserError
from cirbench.leaderboard.entries import Entry, registered


@dataclass
class Significance:
    entries: list[Entry]
    notes: dict[str, list[str]] = field(default_factory=dict)  # per benchmark
    skipped: list[str] = field(default_factory=list)  # runs without intervals, with the reason


def add_intervals(
    entries: Sequence[Entry], results_dir: Path, resamples: int = 10_000, seed: int = 0, alpha: float = 0.05
) -> Significance:
    """Entries with ``half_widths`` on every single-run row that can be rescored, and the notes on adjacent runs."""
    from cirbench.evaluation import keep_splits
    from cirbench.results import find_result
    from cirbench.stats.bootstrap import intervals
    from cirbench.stats.runs import RunScores, run_scores

    out = Significance(list(entries))
    scores: dict[str, RunScores] = {}
    with keep_splits():
        for i, entry in enumerate(out.entries):
            if entry.source != "run" or entry.seeds:
                continue
            try:
                run = run_scores(find_result(results_dir, entry.run_key))
            except IntegrityError:  # damaged or deleted rankings are refused, as in every reader (not skipped)
                raise
            except UserError as e:
                out.skipped.append(f"{entry.label} `{entry.run_key[:8]}`: {e}")
                continue
            scores[entry.run_key] = run
            found = intervals(run.scores, run.metrics, resamples, seed)
            out.entries[i] = dataclasses.replace(entry, half_widths={m: v.half_width for m, v in found.items()})
    out.notes = adjacent_notes(out.entries, scores, resamples, seed, alpha)
    return out


def adjacent_notes(entries: Sequence[Entry], scores: dict, resamples: int, seed: int, alpha: float) -> dict:
    """Per benchmark: the neighbouring runs (same split and backbone, by headline metric) with p >= ``alpha``."""
    from cirbench.stats.bootstrap import difference, permutation_p

    groups: dict[tuple[str, str, str], list[Entry]] = defaultdict(list)
    for entry in entries:
        if entry.run_key in scores and entry.default_protocol:
            groups[(entry.benchmark, entry.split, entry.backbone)].append(entry)
    notes: dict[str, list[str]] = defaultdict(list)
    for (benchmark, split, backbone), rows in sorted(groups.items()):
        bench = registered(benchmark)
        metric = bench.main_metric if bench is not None else None
        rows = [r for r in rows if metric in r.metrics]
        rows.sort(key=lambda r: -r.metrics[metric])
        same = []
        for upper, lower in zip(rows, rows[1:], strict=False):
            a, b = scores[upper.run_key], scores[lower.run_key]
            if a.scores.query_ids != b.scores.query_ids:
                continue
            p = permutation_p(difference(a.scores, b.scores), metric, resamples, seed)
            if p >= alpha:
                delta = upper.metrics[metric] - lower.metrics[metric]
                same.append(f"{upper.label} and {lower.label} (Δ {metric} {delta:+.2f}, p = {p:.3f})")
        if same:
            notes[benchmark].append(
                f"Not significantly different on {split} with {backbone} (adjacent runs by {metric}, two-sided "
                f"paired sign-flip test over the queries, p >= {alpha}): " + "; ".join(same) + "."
            )
    return dict(notes)
