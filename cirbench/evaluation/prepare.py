"""Before ranking: refuse a split that cannot be ranked, and apply the missing-images policy.

Nothing is dropped silently. Missing and empty images are an error naming the count, the first paths and the layout,
or, with ``--skip-missing``, they are left out and every count goes into the result (and which images were left out
into its run key, so adding them later gives a new run instead of a stale reuse). Without ``--skip-missing`` the
check is one ``stat`` per image (plus the ``realpath`` of its identity). With ``--skip-missing`` each file is also
opened (its header and last bytes read: ``images.check_images`` at ``header`` level) before encoding, so files that
are no image, JPEGs and PNGs cut short (no end marker) and images over the pixel budget are left out the same way;
a file that passes that but whose pixels do not decode (a corrupt middle) stops the evaluation naming the file,
because leaving it out after the run key was made would change what the key promised (``cirbench data check
--deep`` lists them). An image over the pixel budget that reaches encoding is a ``LimitError`` naming it.
"""

from __future__ import annotations

import dataclasses
import hashlib

from cirbench.benchmarks.base import BenchmarkSplit
from cirbench.errors import DataError
from cirbench.images import ImageCheck
from cirbench.results import Skipped


def refuse_blocked(data: BenchmarkSplit) -> None:
    """A split its benchmark says cannot be ranked here (e.g. CIRCO without its gallery list) is a user error."""
    unknown = [p.name for p in data.parts if p.gallery is not None and not p.gallery]
    empty = [f"the gallery of part {', '.join(unknown)} is empty; check {_files(data)}"] if unknown else []
    problems = list(data.blockers) or empty
    if problems:
        raise DataError(f"{data.benchmark} {data.split}: " + "; ".join(problems))


def image_check(data: BenchmarkSplit, skip_missing: bool) -> ImageCheck:
    """The check an evaluation relies on: existence (stat only), plus the header, pixel budget and end marker when
    unreadable files may be left out."""
    return data.check_images("header" if skip_missing else "exists")


def missing_images_hash(data: BenchmarkSplit, skip_missing: bool = True) -> str | None:
    """Which images are left out (None when none are): part of a ``--skip-missing`` run's key."""
    bad = sorted(ref.key for ref in image_check(data, skip_missing).bad)
    return hashlib.sha256("\n".join(bad).encode()).hexdigest()[:16] if bad else None


def prepare_split(data: BenchmarkSplit, skip_missing: bool = False) -> tuple[BenchmarkSplit, Skipped]:
    """Fail on missing or empty images (count, first paths, expected layout), or leave them out (with unreadable
    ones) and count what was left out; refuse a split with no query left."""
    _require_queries(data)  # an empty annotation list is named before any image is looked at
    check = image_check(data, skip_missing)
    if not check.bad:
        return data, Skipped()
    if not skip_missing:
        layout = f" (layout: {data.layout})" if data.layout else ""
        raise DataError(
            f"{data.benchmark} {data.split}: {check.summary()}{layout}. Put the images where the layout expects "
            "them (see `cirbench data check`), or pass --skip-missing to evaluate without them "
            "(the counts are stored in the result)."
        )
    missing = {ref.key for ref in check.bad}
    parts, dropped_queries, dropped_gallery, unwinnable = [], 0, 0, 0
    for part in data.parts:
        keep = [
            q
            for q in part.queries
            if q.reference not in missing and not (q.candidates and any(c in missing for c in q.candidates))
        ]
        dropped_queries += len(part.queries) - len(keep)
        unwinnable += sum(1 for q in keep if q.gt and any(g in missing for g in q.gt))
        gallery = part.gallery
        if gallery is not None:
            gallery = [g for g in gallery if g not in missing]
            dropped_gallery += len(part.gallery) - len(gallery)
        parts.append(dataclasses.replace(part, queries=keep, gallery=gallery))
    images = {k: v for k, v in data.images.items() if k not in missing}
    skipped = Skipped(
        images_missing=len(check.missing),
        images_unreadable=len(check.unreadable),
        queries_dropped=dropped_queries,
        gallery_images_dropped=dropped_gallery,
        queries_target_missing=unwinnable,
        first_missing=[str(ref.path) for ref in check.bad[:5]],
        missing_images_sha256=missing_images_hash(data, skip_missing),
    )
    prepared = dataclasses.replace(data, parts=parts, images=images)
    _require_queries(prepared, f" ({len(missing)} images left out by --skip-missing)")
    return prepared, skipped


def _files(data: BenchmarkSplit) -> str:
    """The split's annotation files, for a message that says where an empty list came from."""
    names = [str(p) for p in data.annotation_files[:4]]
    return ", ".join(names) + (f" (+{len(data.annotation_files) - 4} more)" if len(data.annotation_files) > 4 else "")


def _require_queries(data: BenchmarkSplit, why: str = "") -> None:
    """Every part needs a query: a metric over no query is undefined (a FreeDom domain without query images, an
    empty FashionIQ category file), so it is named here, before anything is encoded."""
    if not data.queries:
        raise DataError(f"{data.benchmark} {data.split}: no query to evaluate{why}; check {_files(data)}")
    empty = [part.name for part in data.parts if not part.queries]
    if empty:
        names = ", ".join(empty[:4]) + (f" (+{len(empty) - 4} more)" if len(empty) > 4 else "")
        raise DataError(
            f"{data.benchmark} {data.split}: no query in part {names}{why}; check {_files(data)}, or leave the part "
            "out with its protocol option where there is one (`cirbench list` shows them)"
        )


def limit_queries(data: BenchmarkSplit, limit: int | None) -> BenchmarkSplit:
    """The first ``limit`` queries (in the split's order, across parts) with the images they need: the full gallery
    of every part that keeps a query, or the kept queries' own candidates. A smoke test ranks against the real
    gallery, so its numbers mean what the full run's do, over fewer queries."""
    if limit is None:
        return data
    parts, left = [], limit
    for part in data.parts:
        if left <= 0:
            break
        keep = part.queries[:left]
        left -= len(keep)
        if keep:
            parts.append(dataclasses.replace(part, queries=keep))
    needed = set()
    for part in parts:
        needed.update(part.gallery or ())
        for q in part.queries:
            needed.update((q.reference, *(q.candidates or ())))
    images = {k: v for k, v in data.images.items() if k in needed}
    return dataclasses.replace(data, parts=parts, images=images)
