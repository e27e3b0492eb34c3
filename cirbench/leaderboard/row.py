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
    half_widths: Mapping[str, float] = field(default_factory=dict, compare=False)  # 95 % bootstrap CI (--ci)
    train_record: tuple[float, str | None, int | None] | None = field(default=None, compare=False)  # s, device, n

    @property
    def label(self) -> str:
        label = f"{self.method} ({self.variant})" if self.variant else self.method
        return f"{label}, {len(self.seeds)} seeds" if self.seeds else label

    @property
    def default_protocol(self) -> bool:
        return not self.protocol
