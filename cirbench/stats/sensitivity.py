"""How much do the choices papers make differently move a run's numbers?

Each benchmark and method marks the options papers choose differently (``Option(varies=True)``: CIRR's and CIRCO's
reference removal, CIRCO's text, FashionIQ's caption joining, the Pic2Word/SEARLE prompt and preprocessing
variants). Each other value is evaluated once (features come from the cache) and compared with the default run on
the same queries: the difference, its paired bootstrap interval and a sign-flip p-value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cirbench.errors import UsageError, shown
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
    request: RunRequest, settings: EvalSettings, metric: str | None = None, resamples: int = 10_000, seed: int = 0
) -> tuple[RunScores, list[Row]]:
    """The default run and one row per variant (``metric``: the benchmark's main metric by default). An unknown
    ``metric`` is refused before anything is evaluated."""
    if metric is not None:
        names = resolve(request).benchmark.metric_names
        if metric not in names:
            raise UsageError(
                f"--metric {shown(metric)} is not a metric of {request.benchmark}{did_you_mean(metric, names)} "
                f"(its metrics: {', '.join(names)})"
            )
    with keep_splits():
        base = run_scores(evaluate(resolve(request), settings).result)
        metric = metric or base.result.main_metric
        rows = []
        for variant in variants(request):
            changed = _with(request, variant)
            run = run_scores(evaluate(resolve(changed), settings).result)
            label = f"{variant.where} {variant.option}={variant.value}"
            delta = run.metrics[metric] - base.metrics[metric]
            if run.scores.query_ids != base.scores.query_ids:  # not paired: the difference alone, said so
                nan = float("nan")
                rows.append(
                    Row(
                        label + " (other queries: not paired)",
                        run.metrics[metric],
                        delta,
                        nan,
                        nan,
                        nan,
                        run.result.run_key,
                    )
                )
                continue
            interval = paired(run.scores, base.scores, resamples, seed)[metric]
            p = permutation_p(difference(run.scores, base.scores), metric, resamples, seed)
            rows.append(Row(label, run.metrics[metric], delta, interval.low, interval.high, p, run.result.run_key))
    return base, rows


def _with(request: RunRequest, variant: Variant) -> RunRequest:
    if variant.where == "protocol":
        return dataclasses.replace(
            request, protocol_options={**request.protocol_options, variant.option: variant.value}
        )
    return dataclasses.replace(request, method_options={**request.method_options, variant.option: variant.value})


def markdown(base: RunScores, rows: list[Row], metric: str) -> str:
    """The table docs/PROTOCOLS.md shows."""
    head = f"| variant | {metric} | Δ vs default | 95 % paired CI of Δ | p (sign-flip) | run |"
    lines = [head, "|---|---|---|---|---|---|"]
    lines.append(f"| default | {base.metrics[metric]:.2f} | | | | `{base.result.run_key[:8]}` |")
    for r in rows:
        interval = f"[{r.low:+.2f}, {r.high:+.2f}]"
        lines.append(f"| {r.label} | {r.value:.2f} | {r.delta:+.2f} | {interval} | {r.p:.4f} | `{r.run_key[:8]}` |")
    return "\n".join(lines) + "\n"
