"""Checks shared by the benchmarks' evaluation-server writers.

Servers go down and reject files late, so a writer validates everything before it writes anything: these helpers
are pure functions of plain data (query ids, ranked lists, gallery ids) that collect every problem into one
``SubmissionError``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from cirbench.errors import SubmissionError

TOP_K = 50
_SHOW = 3  # examples per problem in an error message


def problems_error(what: str, problems: list[str]) -> SubmissionError:
    return SubmissionError(f"{what} not written, {len(problems)} problem(s): " + "; ".join(problems))


def examples(items: Iterable[Any]) -> str:
    items = list(items)
    more = f", ... ({len(items)} in all)" if len(items) > _SHOW else ""
    return ", ".join(str(i) for i in items[:_SHOW]) + more


def check_keys(problems: list[str], keys: Collection[str], query_ids: Collection[str] | None, expected: int) -> None:
    """Every test query present and no unknown one (or, without the split, the expected count)."""
    if query_ids is None:
        if len(keys) != expected:
            problems.append(f"{len(keys)} queries, the test split has {expected}")
        return
    wanted = {str(q) for q in query_ids}
    missing = [q for q in query_ids if str(q) not in keys]
    extra = sorted(set(keys) - wanted)
    if missing:
        problems.append(f"missing test queries: {examples(missing)}")
    if extra:
        problems.append(f"unknown query ids: {examples(extra)}")


def check_lists(
    problems: list[str],
    lists: Mapping[str, Sequence[Any]],
    k: int,
    gallery: Collection[str] | None,
    label: str,
) -> None:
    """Each list exactly ``k`` unique ids, all in the gallery when it is known."""
    short, dupes, outside = [], [], []
    gallery_set = {str(g) for g in gallery} if gallery is not None else None
    for qid, ids in lists.items():
        if len(ids) != k:
            short.append(f"{qid} ({len(ids)})")
        if len(set(ids)) != len(ids):
            dupes.append(qid)
        if gallery_set is not None:
            outside += [f"{qid}: {i}" for i in ids if str(i) not in gallery_set]
    if short:
        problems.append(f"{label} lists must have exactly {k} ids: {examples(short)}")
    if dupes:
        problems.append(f"{label} lists with duplicate ids: {examples(dupes)}")
    if outside:
        problems.append(f"{label} ids not in the test gallery: {examples(outside)}")


def check_size(data: bytes, limit: int | None, name: str) -> None:
    """The server's upload limit (CIRR: 5 MB); None = no documented limit."""
    if limit is not None and len(data) > limit:
        raise SubmissionError(f"{name} is {len(data):,} bytes, over the server limit of {limit:,} bytes")
