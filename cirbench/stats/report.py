"""The tables ``stats``, ``compare`` and ``sensitivity`` print (rich), every interval through ``format_interval``."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.table import Table

from cirbench.query_scores import QueryScores
from cirbench.stats.bootstrap import Interval
from cirbench.stats.clusters import units
from cirbench.stats.compare import Comparison
from cirbench.stats.display import format_interval
from cirbench.stats.runs import RunScores

EFFECT = "design effect: the metric's variance with clusters resampled whole / with queries resampled one by one"
METHOD_NAMES = {"percentile": "percentile", "agresti-coull": "Agresti-Coull (small or rare)"}


def sampling_unit(scores: QueryScores, cluster: bool) -> str:
    """``4181 queries in 503 clusters`` or ``80 queries`` (each its own unit)."""
    n = len(scores.query_ids)
    found = units(scores, cluster)
    if found is None:
        why = "" if scores.clusters is None else ", clusters not used (--cluster none)" if not cluster else ""
        return f"{n} queries{why}"
    return f"{n} queries in {found.count} clusters"


def _effect(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}"


def stats_record(run: RunScores, found: dict[str, Interval], resamples: int, seed: int, cluster: bool) -> dict:
    grouped = units(run.scores, cluster)
    return {
        "run_key": run.result.run_key,
        "n_queries": len(run.scores.query_ids),
        "n_clusters": None if grouped is None else grouped.count,
        "resamples": resamples,
        "seed": seed,
        "metrics": {
            m: {"value": i.value, "low": i.low, "high": i.high, "method": i.method, "design_effect": i.design_effect}
            for m, i in found.items()
        },
    }


def stats_table(run: RunScores, found: dict[str, Interval], order: Sequence[str], resamples: int, cluster: bool):
    title = f"{run.result.label} ({sampling_unit(run.scores, cluster)}, {resamples:,} resamples)"
    clustered = units(run.scores, cluster) is not None
    table = Table(title=title, caption=EFFECT if clustered else None)
    columns = ("metric", "value and 95 % interval", "interval method") + (("design effect",) if clustered else ())
    for column in columns:
        table.add_column(column, justify="left" if column in ("metric", "interval method") else "right")
    for m in order:
        i = found[m]
        effect = (_effect(i.design_effect),) if clustered else ()
        table.add_row(m, format_interval(i.value, i.low, i.high), METHOD_NAMES[i.method], *effect)
    return table


def compare_record(found: Comparison, order: Sequence[str], cluster: bool) -> dict:
    primary = found.tests[found.main]
    return {
        "a": found.a.result.run_key,
        "b": found.b.result.run_key,
        "a_label": found.a.result.label,
        "b_label": found.b.result.label,
        "primary": {"metric": found.main, "p": primary.p, "p_method": primary.method},
        "family": {"name": found.family, "metrics": found.family_metrics, "adjustment": "holm"},
        "n_clusters": found.clusters or None,
        "metrics": found.rows(list(order)),
    }


def compare_table(found: Comparison, order: Sequence[str], cluster: bool):
    a, b = found.a.result, found.b.result
    title = f"A {a.label} ({a.run_key[:8]}) vs B {b.label} ({b.run_key[:8]}): {sampling_unit(found.a.scores, cluster)}"
    holm_column = f"p (Holm, {found.family})"
    table = Table(title=title, caption=EFFECT if found.clusters else None)
    columns = ("metric", "A", "B", "A - B and 95 % paired interval", "p", holm_column)
    for column in columns + (("design effect",) if found.clusters else ()):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for m, r in found.rows(list(order)).items():
        holm = "–" if r["p_holm"] is None else f"{r['p_holm']:.4f}"
        table.add_row(
            f"{m} (primary)" if r["primary"] else m,
            f"{r['a']:.2f}",
            f"{r['b']:.2f}",
            format_interval(r["difference"], r["low"], r["high"], signed=True),
            f"{r['p']:.4f}",
            holm,
            *((_effect(r["design_effect"]),) if found.clusters else ()),
        )
    return table


def compare_notes(found: Comparison) -> list[str]:
    """What the table's p-values are: the primary test (raw) and the family Holm adjusts."""
    primary = found.tests[found.main]
    unit = "whole clusters" if found.clusters else "queries"
    return [
        f"primary: {found.main}, two-sided paired sign-flip test over {unit}, p = {primary.p:.4f} (raw; "
        f"{primary.method})",
        f"Holm adjusts the {found.family} family ({len(found.family_metrics)} metrics: "
        f"{', '.join(found.family_metrics)}); other metrics have no adjusted p",
    ]


def sensitivity_table(base: RunScores, rows: Sequence, metric: str, cluster: bool):
    """``sensitivity``'s rows as a rich table (the markdown of ``stats.sensitivity.markdown`` for files)."""
    unit = sampling_unit(base.scores, cluster)
    title = f"{base.result.label}: {metric} under each choice papers make differently ({unit})"
    table = Table(title=title)
    for column in ("variant", metric, "Δ vs default and 95 % paired interval", "p (sign-flip)", "run"):
        table.add_column(column, justify="left" if column in ("variant", "run") else "right")
    table.add_row("default", f"{base.metrics[metric]:.2f}", "", "", base.result.run_key[:8])
    for r in rows:
        prefix = f"{r.metric} " if r.metric and r.metric != metric else ""
        value = "–" if math.isnan(r.value) else f"{prefix}{r.value:.2f}"
        delta = "" if math.isnan(r.delta) else format_interval(r.delta, r.low, r.high, signed=True)
        p = "" if math.isnan(r.p) else f"{r.p:.4f}"
        table.add_row(r.label, value, delta, p, r.run_key[:8])
    return table
