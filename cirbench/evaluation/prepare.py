"""Before ranking: refuse a split that cannot be ranked, and apply the missing-images policy.

Nothing is dropped silently: missing images are an error naming the count, the first paths and the layout, or,
with ``--skip-missing``, they are left out and every count goes into the result (and which images were missing
into its run key, so adding them later gives a new run instead of a stale reuse).
"""

from __future__ import annotations

import dataclasses
import hashlib

from cirbench.benchmarks.base import BenchmarkSplit
from cirbench.errors import DataError
from cirbench.results import Skipped


def refuse_blocked(data: BenchmarkSplit) -> None:
    """A split its benchmark says cannot be ranked here (e.g. CIRCO without its gallery list) is a user error."""
    unknown = [p.name for p in data.parts if p.gallery is not None and not p.gallery]
    problems = list(data.blockers) or ([f"the gallery of part {', '.join(unknown)} is empty"] if unknown else [])
    if problems:
        raise DataError(f"{data.benchmark} {data.split}: " + "; ".join(problems))


def missing_images_hash(data: BenchmarkSplit) -> str | None:
    """Which images are missing (None when none are)."""
    missing = sorted(ref.key for ref in data.image_check.missing)
    return hashlib.sha256("\n".join(missing).encode()).hexdigest()[:16] if missing else None


def prepare_split(data: BenchmarkSplit, skip_missing: bool = False) -> tuple[BenchmarkSplit, Skipped]:
    """Fail on missing images (count, first paths, expected layout) or drop them and count what was dropped."""
    check = data.image_check
    if not check.missing:
        return data, Skipped()
    if not skip_missing:
        layout = f" (layout: {data.layout})" if data.layout else ""
        raise DataError(
            f"{data.benchmark} {data.split}: {check.summary()}{layout}. Put the images where the layout expects "
            "them (see `cirbench data check`), or pass --skip-missing to evaluate without them "
            "(the dropped count is stored in the result)."
        )
    missing = {ref.key for ref in check.missing}
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
        images_missing=len(missing),
        queries_dropped=dropped_queries,
        gallery_images_dropped=dropped_gallery,
        queries_target_missing=unwinnable,
        first_missing=[str(ref.path) for ref in check.missing[:5]],
        missing_images_sha256=missing_images_hash(data),
    )
    return dataclasses.replace(data, parts=parts, images=images), skipped
