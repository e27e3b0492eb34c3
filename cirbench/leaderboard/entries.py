"""Leaderboard rows: run results and published (reported) numbers, as ``Entry`` objects.

Every row says what produced it (``run`` with its run key, or ``reported`` with its citation), on which split and
under which protocol, so a val run is never silently ranked against a published test number.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cirbench.benchmarks import BENCHMARKS
from cirbench.benchmarks.base import Benchmark
from cirbench.errors import LeaderboardError, UserError, shown
from cirbench.leaderboard.durations import format_train_time
from cirbench.leaderboard.reported_rows import check_row, refuse_duplicates
from cirbench.leaderboard.row import Entry  # re-exported: ``from cirbench.leaderboard.entries import Entry``
from cirbench.results import RunResult, iter_results


def registered(name: str) -> Benchmark | None:
    """The registered benchmark of a row (None for a benchmark this install does not know: it still renders)."""
    return BENCHMARKS.get(name) if name in BENCHMARKS else None


_REPORTED_TIME = re.compile(
    r"(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>min|minutes?|h|hours?|s|sec|seconds?)\b"
    r"(?:.*?\bon\s+(?P<count>\d+)\s*[x×]\s*(?P<device>[A-Za-z0-9][\w-]*))?",
    re.IGNORECASE,
)


def parse_reported_time(text: str | None) -> str | None:
    """ "48 min on 8x A100 (README)" -> "48 min, 8× A100"; None when the text gives no time."""
    match = _REPORTED_TIME.search(text or "")
    if not match:
        return None
    unit = match["unit"].lower()
    unit = "min" if unit.startswith("min") else "h" if unit.startswith("h") else "s"
    out = f"{match['num']} {unit}"
    if match["count"]:
        out += f", {int(match['count'])}× {match['device']}"
    return out


def _value_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def protocol_deviations(benchmark: str, options: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Options that change the numbers and differ from the benchmark's defaults, as "key=value"."""
    bench = registered(benchmark)
    if bench is None or options is None:
        return ()
    out = []
    for option in sorted(bench.options, key=lambda o: o.name):
        if option.keyed and option.name in options and _value_text(options[option.name]) != _value_text(option.default):
            out.append(f"{option.name}={_value_text(options[option.name])}")
    return tuple(out)


def method_deviations(method: str, benchmark: str, options: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Keyed method options that differ from what ``method`` uses on ``benchmark`` by default (its option defaults,
    with its ``benchmark_defaults`` applied), as "key=value": ``alpha=0.6`` for a Slerp run with ``-o alpha=0.6``."""
    from cirbench.methods import METHODS

    if options is None or method not in METHODS:
        return ()
    entry = METHODS.get(method)
    try:
        defaults = entry.parse_options(entry.defaults_for(benchmark))
    except UserError:  # a plugin's defaults this install cannot read: the row still renders, unlabelled
        return ()
    out = []
    for option in sorted(entry.options, key=lambda o: o.name):
        if not option.keyed or option.name not in options:
            continue
        if _value_text(options[option.name]) != _value_text(defaults.get(option.name, option.default)):
            out.append(f"{option.name}={_value_text(options[option.name])}")
    return tuple(out)


def entry_from_result(result: RunResult) -> Entry:
    """A result file -> one run row."""
    method, bench, skipped, timing = result.method, result.benchmark, result.skipped, result.timing
    protocol = protocol_deviations(bench.name, bench.options)
    if skipped.queries_dropped:
        protocol += (f"skipped {skipped.queries_dropped} queries",)
    if skipped.images_missing and not skipped.queries_dropped:
        protocol += (f"{skipped.images_missing} images missing",)
    limit = result.key_fields.get("limit")
    limit = limit if isinstance(limit, int) and not isinstance(limit, bool) else None
    if limit is not None:  # a smoke test over the first N queries: never ranked as a full run
        protocol += (f"first {limit} queries (--limit)",)
    index = result.key_fields.get("index")
    if index:  # an approximate index (exact search is never in the key): its numbers are not exact search's
        recall = (result.run_settings.get("index") or {}).get("recall@50")
        protocol += (f"{index['name']} (recall@50 {recall:.2f})" if recall is not None else str(index["name"]),)
    decoder = result.key_fields.get("decode")
    on_device = ((result.run_settings.get("decode") or {}).get("images") or {}).get("device")
    if decoder and on_device != 0:  # JPEGs decoded on the device: pixels round differently from PIL's (marked);
        protocol += (f"JPEGs decoded by {decoder}",)  # none decoded there: every feature is bitwise the workers'
    return Entry(
        benchmark=bench.name,
        split=bench.split,
        method=method.name,
        variant=method.variant or "",
        backbone=result.backbone.id,
        metrics={k: float(v) for k, v in result.metrics.items() if v is not None},
        source="run",
        protocol=protocol,
        options=method_deviations(method.name, bench.name, result.key_fields.get("method_options", method.options)),
        model=method.checkpoint_id or "",
        limit=limit,
        training_data=method.training_data,
        zero_shot=method.zero_shot,
        train_time=format_train_time(
            timing.get("train_s"), timing.get("train_device"), timing.get("train_device_count")
        ),
        run_key=result.run_key,
        created_at=result.created_at,
    )


def _with_seed(entry: Entry, result: RunResult) -> Entry:
    """The row with its seed facts; its seed group also holds the protocol marks, so runs that differ in one (device
    decoding, --limit, --index) are never averaged as seeds."""
    from cirbench.leaderboard.seeds import seed_group, train_record, training_seed

    group = seed_group(result)
    group = f"{group}|{json.dumps(entry.protocol)}" if group else ""
    return dataclasses.replace(entry, seed=training_seed(result), seed_group=group, train_record=train_record(result))


def _row_citation(row: Mapping[str, Any], benchmark: str) -> str:
    """The row's source, or a per-benchmark override such as ``genecis_source`` / ``circo_genecis_source``."""
    for key, value in row.items():
        if key.endswith("_source") and benchmark in key[: -len("_source")].split("_"):
            return str(value)
    return str(row.get("source", ""))


def _published_split(benchmark: str, defaults: Mapping[str, str]) -> str:
    if benchmark in defaults:
        return str(defaults[benchmark])
    bench = registered(benchmark)
    return bench.published_split if bench is not None else "test"


def load_reported(path: Path) -> list[Entry]:
    """``results/reported.yaml`` (or the bare list of ``published_results.yaml``) -> reported rows.

    Any mapping of numbers under a row is a benchmark block, so a new benchmark needs no code change. A row's
    split comes from its ``split`` field, else the file's ``default_splits``, else where the benchmark's papers
    report it (``Benchmark.published_split``).
    """
    import yaml

    from cirbench import yaml_io

    try:
        data = yaml_io.read(path)  # strict and bounded: a key twice, an alias bomb or a huge file is one line
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise LeaderboardError(f"cannot read reported results {path}: {' '.join(str(e).split())}") from e
    if isinstance(data, list):
        data = {"rows": data}
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise LeaderboardError(f"{path}: expected a list of rows or a mapping with a 'rows' list")
    defaults = data.get("default_splits") or {}
    if not isinstance(defaults, dict):
        raise LeaderboardError(f"{path}: default_splits must map benchmark -> split, not {shown(defaults)}")
    zero_shot_default = data.get("zero_shot")
    entries = []
    keys: list[tuple[int, tuple[str, ...]]] = []
    for index, row in enumerate(data["rows"]):
        if not isinstance(row, dict) or "method" not in row or "backbone" not in row:
            raise LeaderboardError(f"{path}: row {index} needs at least 'method' and 'backbone'")
        check_row(path, index, {**row, "split": _row_splits(row.get("split"), defaults)})
        row_split = row.get("split")
        time_note = row.get("train_time")
        for bench, metrics in row.items():
            if bench == "split" or not _is_metric_block(metrics):
                continue
            split = row_split.get(bench) if isinstance(row_split, dict) else row_split
            citation = _row_citation(row, bench)
            if time_note and parse_reported_time(time_note):
                citation += f"; train time: {time_note}"
            entries.append(
                Entry(
                    benchmark=bench,
                    split=str(split or _published_split(bench, defaults)),
                    method=str(row["method"]),
                    variant=str(row.get("variant") or ""),
                    backbone=str(row["backbone"]),
                    metrics={k: float(v) for k, v in metrics.items() if v is not None},
                    source="reported",
                    citation=citation,
                    training_data=row.get("training_data"),
                    zero_shot=row.get("zero_shot", zero_shot_default),
                    train_time=parse_reported_time(time_note),
                    group=f"reported-{index:03d}",
                )
            )
            e = entries[-1]
            keys.append((index, (e.benchmark, e.split, e.method, e.variant, e.backbone)))
    refuse_duplicates(path, keys)
    return entries


def _row_splits(split: Any, defaults: Mapping[str, Any]) -> Any:
    """The row's own split, else the file's ``default_splits`` (both checked against each benchmark's splits)."""
    if split is not None and not isinstance(split, dict):
        return split
    return {**defaults, **(split or {})}


def _is_metric_block(value: Any) -> bool:
    """A benchmark block (``check_row`` has refused every malformed one; null values are "not reported")."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all((isinstance(v, (int, float)) and not isinstance(v, bool)) or v is None for v in value.values())
    )


def run_entries(results: Iterable[RunResult], aggregate: bool = True) -> list[Entry]:
    """Run results -> rows (with their seed facts); runs that differ only in seed become one row if ``aggregate``.
    Test-split runs without public labels have no metrics: they feed `cirbench submit`, not the tables."""
    from cirbench.leaderboard.seeds import aggregate_seeds

    entries = [_with_seed(entry_from_result(r), r) for r in results if r.metrics]
    return aggregate_seeds(entries) if aggregate else entries


def collect_entries(results_dir: Path | None, reported: Path | None, aggregate: bool = True) -> list[Entry]:
    """Every run under ``results_dir/runs`` plus the reported rows (either may be None); runs that differ only in
    their training seed become one row (mean ± sample std) unless ``aggregate`` is False."""
    results = iter_results(results_dir) if results_dir is not None else []
    entries = run_entries(results, aggregate)
    if reported is not None:
        entries += load_reported(reported)
    return entries
