"""How much do the choices papers make differently move a run's numbers?

Each benchmark and method marks the options papers choose differently (``Option(varies=True)``: CIRR's and CIRCO's
reference removal, CIRCO's text, FashionIQ's caption joining, the Pic2Word/SEARLE prompt and preprocessing
variants). Each other value is evaluated once (features come from the cache) and compared with the default run on
the same queries: the difference, its paired bootstrap interval and a sign-flip p-value.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from cirbench.errors import AnnotationError, DataError, OptionError, UsageError, shown
from cirbench.evaluation import EvalSettings, RunRequest, evaluate, keep_splits, resolve
from cirbench.evaluation.evaluator import load_split
from cirbench.methods.base import CAPTION_JOIN
from cirbench.options import alternatives, did_you_mean
from cirbench.stats.bootstrap import difference, paired, permutation_p
from cirbench.stats.runs import RunScores, run_scores


@dataclass
class Variant:
    where: str  # "protocol" or "method"
    option: str
    value: object


@dataclass
class Row:
    label: str
    value: float
    delta: float
    low: float
    high: float
    p: float
    run_key: str
    metric: str = ""  # set when ``value`` is of another metric than the table's (a variant with its own metrics)


def variants(request: RunRequest) -> list[Variant]:
    """Every other value of every option marked ``varies``, one change at a time (caption joining only where
    queries have several captions: elsewhere it cannot change a number)."""
    spec = resolve(request)
    data = load_split(spec.benchmark, spec.split, spec.root, spec.options)
    several = any(len(q.texts) > 1 for q in data.queries)
    out = [Variant("protocol", o.name, v) for o in spec.benchmark.options if o.varies for v in alternatives(o)]
    out += [
        Variant("method", o.name, v)
        for o in spec.method.entry.options
        if o.varies and (several or o.name != CAPTION_JOIN.name)
        for v in alternatives(o)
    ]
    return out


def sensitivity(
    request: RunRequest,
    settings: EvalSettings,
    metric: str | None = None,
    resamples: int = 10_000,
    seed: int = 0,
    cluster: bool = True,
    progress: Callable[[str], None] | None = None,
) -> tuple[RunScores, list[Row]]:
    """The default run and one row per variant (``metric``: the benchmark's main metric by default). An unknown
    ``metric`` is refused before anything is evaluated.

    A variant whose protocol has other metrics (``protocol=mieb``: mteb's names, other queries) shows its own main
    metric beside the default's number, with no difference, interval or p: the two are not the same quantity. A
    variant whose data cannot be read (``protocol=mieb`` needs every split's image list and images) is listed with the
    reason instead of stopping the others. ``cluster``: resample and flip the benchmark's clusters of dependent
    queries (False: queries); ``progress`` hears one line before each evaluation.
    """
    say = progress or (lambda line: None)
    spec = resolve(request)
    if metric is not None:
        names = spec.benchmark.metric_names_for(spec.options)
        if metric not in names:
            raise UsageError(
                f"--metric {shown(metric)} is not a metric of {request.benchmark}{did_you_mean(metric, names)} "
                f"(its metrics: {', '.join(names)})"
            )
    nan = float("nan")
    with keep_splits():
        say("evaluating the default run (cached runs are reused)")
        base = run_scores(evaluate(spec, settings).result)
        metric = metric or spec.benchmark.main_metric_for(spec.options)
        rows = []
        found = variants(request)
        for i, variant in enumerate(found, 1):
            label = f"{variant.where} {variant.option}={variant.value}"
            say(f"[{i}/{len(found)}] {label}")
            try:
                changed = resolve(_with(request, variant))
                run = run_scores(evaluate(changed, settings).result)
            except (AnnotationError, DataError, OptionError) as exc:  # files or images this variant needs are absent
                rows.append(Row(f"{label} (not evaluated: {exc})", nan, nan, nan, nan, nan, ""))
                continue
            if metric not in run.metrics:  # another protocol's metrics: shown beside, never subtracted
                own = changed.benchmark.main_metric_for(changed.options)
                value = run.metrics.get(own, nan)
                note = f" (its own metrics and queries: no {metric}, not compared)"
                rows.append(Row(label + note, value, nan, nan, nan, nan, run.result.run_key, metric=own))
                continue
            delta = run.metrics[metric] - base.metrics[metric]
            if run.scores.query_ids != base.scores.query_ids:  # not paired: the difference alone, said so
                label += " (other queries: not paired)"
                rows.append(Row(label, run.metrics[metric], delta, nan, nan, nan, run.result.run_key))
                continue
            interval = paired(run.scores, base.scores, resamples, seed, cluster=cluster)[metric]
            p = permutation_p(difference(run.scores, base.scores), metric, resamples, seed, cluster)
            rows.append(Row(label, run.metrics[metric], delta, interval.low, interval.high, p, run.result.run_key))
    return base, rows


def _with(request: RunRequest, variant: Variant) -> RunRequest:
    if variant.where == "protocol":
        return dataclasses.replace(
            request, protocol_options={**request.protocol_options, variant.option: variant.value}
        )
    return dataclasses.replace(request, method_options={**request.method_options, variant.option: variant.value})


def markdown(base: RunScores, rows: list[Row], metric: str) -> str:
    """The table docs/PROTOCOLS.md shows; a variant with its own metrics shows that metric's name by its value."""
    head = f"| variant | {metric} | Δ vs default | 95 % paired CI of Δ | p (sign-flip) | run |"
    lines = [head, "|---|---|---|---|---|---|"]
    lines.append(f"| default | {base.metrics[metric]:.2f} | | | | `{base.result.run_key[:8]}` |")
    for r in rows:
        value = _num(r.value, f"{r.metric} " if r.metric and r.metric != metric else "")
        interval = "" if math.isnan(r.low) else f"[{r.low:+.2f}, {r.high:+.2f}]"
        delta = "" if math.isnan(r.delta) else f"{r.delta:+.2f}"
        p = "" if math.isnan(r.p) else f"{r.p:.4f}"
        run = f"`{r.run_key[:8]}`" if r.run_key else ""
        lines.append(f"| {r.label} | {value} | {delta} | {interval} | {p} | {run} |")
    return "\n".join(lines) + "\n"


def _num(value: float, prefix: str = "") -> str:
    return "–" if math.isnan(value) else f"{prefix}{value:.2f}"
