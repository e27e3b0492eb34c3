"""Where every ground truth sits in a query's *full* ranking, for metrics that need more than the stored top-K.

Why: FreeDom's mAP runs over the whole ranking and Pic2Word's true recall is reported up to K = 200, but a result
stores only the top 50 per query. A benchmark that sets ``needs_positive_ranks`` gets ``RankingsWithPositives``
from the engine, which sorts each full score row once and keeps the 0-based positions of the positives. A rankings
file (``cirbench score``) carries no such positions: they are read off its lists, and are exact up to the list's
length, or everywhere when the list holds every positive or the whole gallery (``ranks_of``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from cirbench.benchmarks.base import Part, Query, Rankings


@dataclass
class RankingsWithPositives(Rankings):
    """``Rankings`` plus, per query id, the sorted 0-based positions of its ground truths in the full ranking."""

    positive_ranks: dict[str, list[int]] | None = field(default_factory=dict)


@dataclass(frozen=True)
class PositiveRanks:
    """A query's positive positions and how deep they are known: ``depth`` is ``inf`` when every one is known."""

    ranks: tuple[int, ...]
    n_positives: int
    depth: float


def ranks_of(query: Query, rankings: Rankings, gallery_size: int) -> PositiveRanks:
    """The positions of ``query.gt`` in its ranking: exact from the engine, else read off the (top-K) list."""
    gt = query.gt or ()
    known = rankings.positive_ranks
    if known and query.qid in known:
        return PositiveRanks(tuple(known[query.qid]), len(gt), math.inf)
    ranking = rankings.top[query.qid]
    members = set(gt)
    found = tuple(i for i, key in enumerate(ranking) if key in members)
    complete = len(found) == len(members) or len(ranking) >= gallery_size
    return PositiveRanks(found, len(gt), math.inf if complete else float(len(ranking)))


def part_ranks(part: Part, rankings: Rankings) -> list[PositiveRanks]:
    """``ranks_of`` for every query of a part (its gallery size decides when a list is complete)."""
    return [ranks_of(q, rankings, len(part.gallery or ())) for q in part.queries]


def known_depth(rows: Sequence[PositiveRanks]) -> float:
    """The largest K for which every row's hits in the top K are known."""
    return min((row.depth for row in rows), default=math.inf)
