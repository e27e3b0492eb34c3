"""The data model every benchmark loader produces, and the protocol a benchmark implements.

A loader turns official annotation files into plain records; nothing here touches pixels. Images are named
by a canonical key (CIRCO: the COCO id as a decimal string; CIRR: the NLVR2 name; FashionIQ: the ASIN; GeneCIS:
``coco:<id>`` or ``vg:<id>:<x>,<y>,<w>,<h>``) and resolved to files through ``ImageRef``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class AnnotationError(ValueError):
    """A malformed or missing annotation file; the message names the file, the record and the fix."""


def read_annotation_json(path: Path, fix: str) -> Any:
    """Parse an annotation file; an unreadable one is an ``AnnotationError`` naming the file and the fix."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise AnnotationError(f"{path}: cannot read JSON ({e}); {fix}") from e


def bad_record(fix: str, path: Path, index: int, problem: str) -> AnnotationError:
    """The error for one malformed record: file, record index, what is wrong, how to fix it."""
    return AnnotationError(f"{path}: record {index}: {problem}; the file is damaged or edited, {fix}")


@dataclass(frozen=True)
class ImageRef:
    """One image to encode: its canonical key, the file it lives in and an optional GeneCIS-style box.

    ``crop`` is the raw ``[x, y, w, h]`` instance box of a GeneCIS attribute task; the dilated crop and the
    black square padding are applied by the image loader, exactly as upstream.
    """

    key: str
    path: Path | None
    crop: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class Query:
    """One composed query.

    ``texts`` holds the modification text(s) as in the annotation file (FashionIQ: both captions, unjoined);
    methods build their prompts from them. ``target`` is the single scored target (CIRR ``target_hard``,
    CIRCO ``target_img_id``); ``gt`` holds every ground truth (CIRCO ``gt_img_ids``). ``subset`` is CIRR's
    group members minus the reference. ``candidates`` is a per-query gallery (GeneCIS: target first).
    """

    qid: str
    reference: str
    texts: tuple[str, ...]
    target: str | None = None
    gt: tuple[str, ...] | None = None
    subset: tuple[str, ...] | None = None
    candidates: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Part:
    """Queries that share one gallery: the whole split, a FashionIQ category or a GeneCIS task.

    ``gallery`` is None when every query brings its own ``candidates``. ``remove_reference`` drops each
    query's reference image from its ranking (CIRR protocol).
    """

    name: str
    queries: list[Query]
    gallery: list[str] | None
    remove_reference: bool = False


@dataclass
class BenchmarkSplit:
    """A loaded split: its parts, every image it needs, the resolved protocol and the annotation files."""

    benchmark: str
    split: str
    parts: list[Part]
    images: dict[str, ImageRef]
    protocol: dict[str, Any]
    annotation_files: list[Path]
    has_labels: bool
    layout: str = ""

    @property
    def queries(self) -> list[Query]:
        return [q for part in self.parts for q in part.queries]

    @property
    def gallery_size(self) -> int:
        """Images ranked against: the sum over distinct galleries (parts may share one, as shapes' styles do)."""
        distinct = {tuple(p.gallery) for p in self.parts if p.gallery is not None}
        return sum(len(g) for g in distinct)


@dataclass
class Rankings:
    """Ranked gallery keys per query id (top-K, K >= 50 or all candidates), plus CIRR's subset ranking."""

    top: dict[str, list[str]]
    subset: dict[str, list[str]] | None = None
    scores: dict[str, list[float]] | None = None


class Benchmark(Protocol):
    """What a benchmark provides. Implementations live in ``cirbench/benchmarks/<name>.py``."""

    name: str
    splits: Sequence[str]
    protocol_version: str
    main_metric: str
    metric_names: Sequence[str]

    def default_options(self) -> dict[str, Any]:
        """Protocol options and their defaults (recorded in every result)."""

    def load(self, root: Path | None, split: str, options: Mapping[str, Any] | None = None) -> BenchmarkSplit:
        """Read annotation files from ``root`` (any supported layout); images are resolved but not opened."""

    def metrics(self, data: BenchmarkSplit, rankings: Rankings) -> dict[str, float]:
        """Official metrics, as percentages, computed from rankings alone."""
