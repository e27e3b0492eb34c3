"""The M-BEIR / MIEB conventions CIRR and FashionIQ follow under ``protocol=mieb`` (a protocol bridge).

MIEB's ``CIRRIT2IRetrieval`` and ``FashionIQIT2IRetrieval`` (mteb 2.26) score M-BEIR's task-7 conversions of the two
datasets (UniIR@98dc570 ``src/data/preprocessing``), which differ from the official protocols:

- the pool is every image of every split (CIRR: ``split.rc2.{train,val,test1}.json``; FashionIQ: one pool for all
  three categories), and the reference image stays in it and can be retrieved;
- texts go through ``format_string`` (stripped, first character capitalised, a final "." added), FashionIQ's two
  captions joined once, in file order, with " and ";
- queries with the same (text, reference image) are merged and their positives unioned (``aggregate_candidates``),
  and queries without a positive are dropped;
- the metrics are mteb's (``cirbench.metrics_mieb``): nDCG@10 is the main score, ``hit_rate_at_K`` is the CIR
  Recall@K, ``recall_at_K`` the fraction of positives found; K in (1, 3, 5, 10, 20, 100, 1000), so no @50.

M-BEIR's images are JPEG re-encodings with the short side resized to 256 px; cirbench reads the originals, so the
numbers can differ slightly for that reason alone (recorded as a warning with every such run).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from cirbench import metrics_mieb as MM
from cirbench.benchmarks.base import BenchmarkSplit, ProtocolView, Query, Rankings
from cirbench.benchmarks.ranks import known_depth, part_ranks
from cirbench.errors import OptionError
from cirbench.options import Option
from cirbench.query_scores import QueryScores

OFFICIAL, MIEB = "official", "mieb"
PROTOCOL_OPTION = Option(
    "protocol",
    "choice",
    OFFICIAL,
    "official: the dataset's own protocol; mieb: as MIEB/M-BEIR score it (pool of every split, reference kept, "
    "duplicate queries merged, mteb's nDCG@10 / hit_rate / recall)",
    (OFFICIAL, MIEB),
    varies=True,
    key_default=False,  # added later: official runs keep the keys they had before the option existed
)
MAIN_METRIC = MM.MAIN_METRIC
METRIC_NAMES = MM.metric_names()
LEADERBOARD_COLUMNS = (
    "ndcg_at_10",
    "hit_rate_at_1",
    "hit_rate_at_5",
    "hit_rate_at_10",
    "hit_rate_at_20",
    "recall_at_10",
)
IMAGES_WARNING = (
    "protocol=mieb: M-BEIR's images are JPEG re-encodings with the short side resized to 256 px (UniIR "
    "preprocessing/utils.py IMAGE_SHORT_SIDE); cirbench reads the original files, so numbers can differ slightly "
    "from MIEB's for that reason alone"
)
NOTES = (
    "Protocol bridge: the MIEB/M-BEIR protocol (pool of every split, reference kept, duplicate queries merged, "
    "mteb metrics). Its numbers are not comparable with the benchmark's official table and are never ranked with it.",
    "hit_rate_at_K is the CIR Recall@K (any positive in the top K); recall_at_K is the fraction of positives found.",
)


class MiebVariant:
    """What a benchmark with a ``protocol=mieb`` variant answers (CIRR, FashionIQ): mteb's metrics under mieb, and
    full-ranking positions so K up to 1000 is exact from a top-50 rankings file."""

    main_metric: str
    metric_names: tuple[str, ...]

    def main_metric_for(self, options: Mapping[str, Any]) -> str:
        return main_metric(options, self.main_metric)

    def metric_names_for(self, options: Mapping[str, Any]) -> tuple[str, ...]:
        return metric_names(options, self.metric_names)

    def wants_positive_ranks(self, data: BenchmarkSplit) -> bool:
        return is_mieb(data.options)


def view(title: str) -> ProtocolView:
    return ProtocolView(f"protocol={MIEB}", title, LEADERBOARD_COLUMNS, MAIN_METRIC, NOTES)


def is_mieb(options: Mapping[str, Any]) -> bool:
    return options.get(PROTOCOL_OPTION.name) == MIEB


def main_metric(options: Mapping[str, Any], official: str) -> str:
    return MAIN_METRIC if is_mieb(options) else official


def metric_names(options: Mapping[str, Any], official: tuple[str, ...]) -> tuple[str, ...]:
    return METRIC_NAMES if is_mieb(options) else official


def refuse(benchmark: str, problem: str) -> OptionError:
    return OptionError(f"{benchmark} protocol=mieb {problem}")


# --------------------------------------------------------------------------------------------- texts


def format_string(text: str | None) -> str:
    """M-BEIR's ``format_string`` (UniIR preprocessing/utils.py): drop carriage returns, strip spaces and then double
    quotes, capitalise the first character, and end with "." unless it ends in ``.?!``."""
    s = (text or "").replace("\r", "").strip().strip('"')
    if s:
        s = s[0].upper() + s[1:]
        if s[-1] not in ".?!":
            s += "."
    return s


def fashioniq_caption(captions: Sequence[str]) -> str:
    """M-BEIR's one FashionIQ text (fashioniq_data_preprocessor.py): each non-empty caption stripped, its first
    character lower-cased and one final "." dropped, joined in file order with " and ", then ``format_string``.

    A caption of spaces only (none in the released files) is skipped here; M-BEIR's code would fail on it."""
    parts = []
    for caption in captions:
        s = caption.strip()
        if not s:
            continue
        s = s[0].lower() + s[1:]
        parts.append(s[:-1] if s.endswith(".") else s)
    return format_string(" and ".join(parts))


# --------------------------------------------------------------------------------------------- queries


def merge_queries(queries: Sequence[Query]) -> list[Query]:
    """Queries with the same text and reference image as one (M-BEIR's ``aggregate_candidates``): the first keeps
    its id and place, the positives (``gt``) are unioned in order, ``extra["merged"]`` lists the ids merged in."""
    merged: dict[tuple[str, str], Query] = {}
    for q in queries:
        key = (q.texts[0], q.reference)
        first = merged.get(key)
        if first is None:
            merged[key] = q
            continue
        gt = tuple(dict.fromkeys((*(first.gt or ()), *(q.gt or ()))))
        extra = {**first.extra, "merged": [*first.extra.get("merged", []), q.qid]}
        merged[key] = replace(first, gt=gt, extra=extra)
    return list(merged.values())


def query(qid: str, reference: str, text: str, positives: Sequence[str], extra: Mapping[str, Any]) -> Query:
    """One MIEB query: its formatted text, the reference, every positive in ``gt`` (the first one as ``target``),
    no subset."""
    return Query(qid, reference, (text,), positives[0], tuple(positives), extra=dict(extra))


def cirr_queries(raw: Sequence[Query], pool: Collection[str]) -> tuple[list[Query], dict[str, Any]]:
    """CIRR val queries as M-BEIR converts them (cirr_data_preprocessor.py): text through ``format_string``,
    positives = every ``target_soft`` entry equal to 1.0 that is in the pool (0.5, 0.2 and -1 are negatives), a
    query without a positive or text dropped, then duplicates merged. Returns the queries and the counts."""
    converted, dropped = [], []
    for q in raw:
        positives = [k for k, v in q.extra["target_soft"].items() if v == 1.0 and k in pool]
        text = format_string(q.texts[0])
        if not positives or not text:
            dropped.append(q.qid)
            continue
        extra = {"pairid": q.extra["pairid"], "target_hard": q.target}
        converted.append(query(q.qid, q.reference, text, positives, extra))
    return _merged(raw, converted, dropped, "no target_soft entry equal to 1.0 (or an empty caption)")


def fashioniq_queries(raw: Sequence[Query]) -> tuple[list[Query], dict[str, Any]]:
    """FashionIQ val queries of every category as M-BEIR converts them (fashioniq_data_preprocessor.py): one text
    (``fashioniq_caption``), the single positive ``target``, a query whose text is empty dropped, then duplicates
    merged across the three categories."""
    converted, dropped = [], []
    for q in raw:
        text = fashioniq_caption(q.texts)
        if not text or q.target is None:
            dropped.append(q.qid)
            continue
        converted.append(query(q.qid, q.reference, text, [q.target], {"category": q.extra.get("category")}))
    return _merged(raw, converted, dropped, "an empty text")


def _merged(raw, converted, dropped, why: str) -> tuple[list[Query], dict[str, Any]]:
    merged = merge_queries(converted)
    facts = {
        "queries_in_files": len(raw),
        "queries_dropped": len(dropped),
        "queries_dropped_why": why,
        "queries_dropped_ids": dropped[:20],
        "queries_merged_away": len(converted) - len(merged),
        "queries": len(merged),
        "positives": sum(len(q.gt or ()) for q in merged),
        "queries_whose_reference_is_a_positive": sum(q.reference in (q.gt or ()) for q in merged),
    }
    return merged, facts


# --------------------------------------------------------------------------------------------- scoring


def _rows(data: BenchmarkSplit, rankings: Rankings, require) -> tuple[list[MM.Row], list[int]]:
    """Each query's positive positions (exact from the engine, else read off its list) and the K values every
    query's list is deep enough for (a top-50 list: K up to 20; the engine's full-ranking positions: every K)."""
    rows, depth = [], float("inf")
    for part in data.parts:
        require(part.queries, rankings)
        found = part_ranks(part, rankings)
        depth = min(depth, known_depth(found))
        rows += [(r.ranks, r.n_positives) for r in found]
    return rows, [k for k in MM.K_VALUES if k <= depth]


def metrics(data: BenchmarkSplit, rankings: Rankings, require) -> dict[str, float]:
    """mteb's metrics in percent, for the K values the rankings are deep enough for."""
    rows, ks = _rows(data, rankings, require)
    return MM.mieb_metrics(rows, ks)


def per_query(data: BenchmarkSplit, rankings: Rankings, require) -> QueryScores:
    """The same metrics per query (``rate`` rule: ``100 * sum / n`` gives back ``metrics`` exactly)."""
    rows, ks = _rows(data, rankings, require)
    scores = QueryScores([q.qid for q in data.queries], [p.name for p in data.parts for _ in p.queries])
    for name, values in MM.mieb_per_query(rows, ks).items():
        scores.add(name, values)
    return scores
