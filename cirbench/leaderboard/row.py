"""``Entry``: one leaderboard row, the type every leaderboard module shares.

It lives below ``entries`` (which builds rows) and ``seeds`` (which merges runs that differ only in seed), so
neither imports the other for its type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    """One benchmark row: a run's result file or one benchmark block of a reported row."""

    benchmark: str
    split: str
    method: str
    backbone: str
    metrics: Mapping[str, float]
    source: str  # "run" or "reported"
    variant: str = ""
    citation: str = ""
    protocol: tuple[str, ...] = ()  # deviations from the benchmark defaults, "key=value"
    options: tuple[str, ...] = ()  # method options that differ from the method's defaults here, "key=value"
    model: str = ""  # the weights a run used beyond the backbone (checkpoint id; members' ids for a seed mean)
    limit: int | None = None  # a --limit smoke run over the split's first ``limit`` queries
    training_data: str | None = None
    zero_shot: bool | None = None
    train_time: str | None = None
    run_key: str = ""
    created_at: str = ""
    group: str = field(default="", compare=False)  # reported.yaml row id: one summary row per reported row
    seed: int | None = None  # the training seed of a run's checkpoint
    seed_group: str = field(default="", compare=False)  # equal for runs that differ only in seed (leaderboard.seeds)
    seeds: tuple[int, ...] = ()  # a row that averages runs over these seeds
    members: tuple[str, ...] = ()  # ... and their run keys
    spread: Mapping[str, float] = field(default_factory=dict, compare=False)  # sample std over the seeds
    intervals: Mapping[str, tuple[float, float]] = field(default_factory=dict, compare=False)  # 95 % CI (--ci)
    replaced: tuple[str, ...] = field(default=(), compare=False)  # a seed mean: earlier runs of a seed it left out
    train_record: tuple[float, str | None, int | None] | None = field(default=None, compare=False)  # s, device, n

    @property
    def label(self) -> str:
        """``slerp (alpha=0.6)``, ``lincir (cirbench run, step 600), 3 seeds``: the variant and every method option
        that differs from the method's defaults, so two rows of one method never look alike."""
        inside = "; ".join(x for x in (self.variant, ", ".join(self.options)) if x)
        label = f"{self.method} ({inside})" if inside else self.method
        return f"{label}, {len(self.seeds)} seeds" if self.seeds else label

    @property
    def half_widths(self) -> dict[str, float]:
        """Half the width of each 95 % interval (--ci)."""
        return {m: (high - low) / 2 for m, (low, high) in self.intervals.items()}

    @property
    def default_protocol(self) -> bool:
        return not self.protocol
