"""``eval --all``: every method card x every benchmark card whose data (and checkpoint) is present.

Each pair goes through ``evaluate`` like a single ``eval``; finished results are reused without loading a model.
A card pair that cannot run here (data not found, a checkpoint not there yet, weights not cached) is skipped with
its reason; a card with a bad option is an error naming the card.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cirbench.cards import BenchmarkCard, MethodCard, load_benchmark_card, load_cards, load_method_card
from cirbench.errors import BackboneError, CardError, MethodError, OptionError, SearchIndexError
from cirbench.evaluation.evaluator import EvalSettings, Outcome, evaluate, keep_splits
from cirbench.evaluation.readiness import why_not_ready
from cirbench.evaluation.spec import RunRequest, resolve


@dataclass
class Skip:
    """A benchmark card (``method_card`` None: with every method) or one card pair that did not run, and why."""

    benchmark_card: str
    method_card: str | None
    reason: str

    def __str__(self) -> str:
        if self.method_card:
            return f"skipped {self.method_card} on {self.benchmark_card}: {self.reason}"
        return f"skipped {self.benchmark_card} for every method card: {self.reason}"


@dataclass
class SuiteReport:
    outcomes: list[Outcome] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


def request_for(mcard: MethodCard, bcard: BenchmarkCard, quick_gelu: bool | None = None) -> RunRequest:
    """The evaluation a card pair asks for; ``quick_gelu`` (the CLI flag) applies where a card does not say."""
    return RunRequest(
        method=mcard.method,
        backbone=mcard.backbone,
        benchmark=bcard.benchmark,
        split=bcard.split,
        root=bcard.root,
        checkpoint=mcard.checkpoint,
        method_options=mcard.options,
        protocol_options=bcard.options,
        variant=mcard.variant,
        quick_gelu=mcard.quick_gelu if mcard.quick_gelu is not None else quick_gelu,
    )


def run_suite(
    methods_dir: Path,
    benchmarks_dir: Path,
    settings: EvalSettings,
    *,
    quick_gelu: bool | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    limit: int | None = None,
    index: str = "exact",
    index_params: dict[str, str] | None = None,
) -> SuiteReport:
    """Evaluate every runnable card pair; returns what ran (reused or new) and what was skipped, with reasons.
    ``limit``: only the first N queries of each split (``eval --all --limit N``, a smoke test of every pair);
    ``index``: how split-wide galleries are searched (a pair the index cannot rank is skipped with the reason)."""
    method_cards = load_cards(methods_dir, load_method_card)
    bench_cards = load_cards(benchmarks_dir, load_benchmark_card)
    if not method_cards or not bench_cards:
        raise CardError(
            f"no cards found: {methods_dir}/*.yaml ({len(method_cards)}), {benchmarks_dir}/*.yaml ({len(bench_cards)})"
        )
    report = SuiteReport()
    with keep_splits():
        for bcard in bench_cards:
            try:
                problem = why_not_ready(bcard.benchmark, bcard.split, bcard.root, bcard.options, settings.skip_missing)
            except OptionError as error:
                raise CardError(f"card {bcard.path}: {error}") from error
            if problem:
                report.skipped.append(Skip(bcard.name, None, problem))
                continue
            for mcard in method_cards:
                if mcard.benchmarks is not None and bcard.benchmark not in mcard.benchmarks:
                    continue
                if mcard.checkpoint is not None and not mcard.checkpoint.exists():
                    report.skipped.append(Skip(bcard.name, mcard.name, f"checkpoint {mcard.checkpoint} not found"))
                    continue
                try:
                    request = dataclasses.replace(
                        request_for(mcard, bcard, quick_gelu),
                        limit=limit,
                        index=index,
                        index_params=dict(index_params or {}),
                    )
                    outcome = evaluate(resolve(request), settings)
                except OptionError as error:
                    raise CardError(f"card {mcard.path}: {error}") from error
                except (BackboneError, MethodError, SearchIndexError) as error:
                    report.skipped.append(Skip(bcard.name, mcard.name, " ".join(str(error).split())))
                    continue
                report.outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
    return report
