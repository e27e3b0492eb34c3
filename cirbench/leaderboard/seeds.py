"""Runs that differ only in their training seed become one leaderboard row: mean ± sample standard deviation, n.

Two runs belong together when everything that defines them is equal except the seed: the method, its options and
variant, the backbone's weights, the benchmark, split, protocol and annotations, and the training recipe (every
``recipe`` and ``schedule`` option of ``TrainConfig`` but ``seed``, with corpora compared by file name, so a
corpus written per seed, ``seed-<s>/corpus.txt``, still matches). Options added to ``TrainConfig`` after a run was
trained take the value that reproduces how it trained (``LATER_OPTIONS``), so a run written by an older cirbench
still joins its newer seeds: without this, a fresh ``cirbench demo`` run of seed 0 formed a row of its own and the
summary showed its number under the 3-seed label. Only runs that record how they were trained (``train_meta``) are
grouped; training-free methods are deterministic and stay single rows. A seed run twice with one recipe counts once
(its latest run), and the row names the runs it left out (``Entry.replaced``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from cirbench.leaderboard.durations import format_train_time
from cirbench.leaderboard.row import Entry

if TYPE_CHECKING:
    from cirbench.results import RunResult


def training_seed(result: RunResult) -> int | None:
    """The seed a run's checkpoint was trained with (None when the run records no training)."""
    config = (result.method.train_meta or {}).get("config") or {}
    seed = config.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def train_record(result: RunResult) -> tuple[float, str | None, int | None] | None:
    """(training seconds, device type, device count) of a run's checkpoint, when recorded."""
    seconds = result.timing.get("train_s")
    if not isinstance(seconds, (int, float)):
        return None
    return float(seconds), result.timing.get("train_device"), result.timing.get("train_device_count")


def seed_group(result: RunResult) -> str:
    """A key equal for runs that differ only in their training seed ("" for runs that record no training)."""
    meta = result.method.train_meta or {}
    config = meta.get("config")
    if training_seed(result) is None or not isinstance(config, dict):
        return ""
    from cirbench.lincir.config import LATER_OPTIONS, STORED_ROLES, fields_with_role

    stored = fields_with_role(*STORED_ROLES)
    recipe: dict[str, Any] = {k: v for k, v in {**LATER_OPTIONS, **config}.items() if k in stored and k != "seed"}
    recipe["corpora"] = [PurePath(str(c)).name for c in config.get("corpora") or []]
    recipe["selection"] = (meta.get("selection") or {}).get("strategy")
    method, bench = result.method, result.benchmark
    identity = {
        # the keyed options (batch size and other settings that do not change numbers are left out)
        "method": [
            method.name,
            method.variant,
            method.version,
            result.key_fields.get("method_options", method.options),
        ],
        "backbone": result.backbone.weights_id,
        "benchmark": [  # the keyed protocol options (data locations differ between machines, not the numbers)
            bench.name,
            bench.split,
            bench.protocol_version,
            result.key_fields.get("protocol", bench.options),
            bench.annotations_sha256,
        ],
        "skipped": result.skipped.queries_dropped,
        "recipe": recipe,
    }
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def aggregate_seeds(entries: Sequence[Entry]) -> list[Entry]:
    """Entries with every group of runs that differ only in seed (two seeds or more) replaced by one row."""
    groups: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        if entry.source == "run" and entry.seed_group and entry.seed is not None:
            groups[entry.seed_group].append(entry)
    merged: dict[str, Entry] = {}
    for key, members in groups.items():
        latest: dict[int | None, Entry] = {}  # one run per seed: the latest (a rerun of one seed counts once)
        for entry in sorted(members, key=lambda e: (e.created_at, e.run_key)):
            latest[entry.seed] = entry
        if len(latest) >= 2:
            kept = {e.run_key for e in latest.values()}
            left_out = tuple(sorted(e.run_key for e in members if e.run_key not in kept))
            merged[key] = _mean_entry(sorted(latest.values(), key=lambda e: e.seed), left_out)
    out, placed = [], set()
    for entry in entries:
        key = entry.seed_group if entry.source == "run" else ""
        if key in merged:
            if key not in placed:
                out.append(merged[key])
                placed.add(key)
            continue
        out.append(entry)
    return out


def _mean_entry(members: list[Entry], left_out: tuple[str, ...] = ()) -> Entry:
    """Mean and sample standard deviation (n - 1) of each metric every member has."""
    names = [m for m in members[0].metrics if all(m in e.metrics for e in members)]
    mean = {m: statistics.fmean(e.metrics[m] for e in members) for m in names}
    spread = {m: statistics.stdev([e.metrics[m] for e in members]) for m in names}
    first = members[0]
    records = [e.train_record for e in members if e.train_record is not None]
    train_time = first.train_time
    if len(records) == len(members) and len({(r[1], r[2]) for r in records}) == 1:
        seconds = statistics.fmean(r[0] for r in records)
        train_time = f"{format_train_time(seconds, records[0][1], records[0][2])} (mean)"
    data = {e.training_data for e in members}
    # Per-seed corpora differ only in their folder (seed-<s>/corpus.txt): show the file names they share.
    training = first.training_data if len(data) == 1 else re.sub(r"[^\s,:]*/", "", first.training_data or "")
    return dataclasses.replace(
        first,
        training_data=training or None,
        train_time=train_time,
        metrics=mean,
        spread={m: v for m, v in spread.items() if not math.isnan(v)},
        seeds=tuple(e.seed for e in members if e.seed is not None),
        members=tuple(e.run_key for e in members),
        run_key=",".join(e.run_key for e in members),
        created_at=max(e.created_at for e in members),
        model=",".join(sorted(e.model for e in members)),
        intervals={},
        replaced=left_out,
    )
