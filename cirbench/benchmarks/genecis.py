"""GeneCIS (v0): loader, metrics and image crops; four tasks, each query ranks its own ``[target] + gallery``.

Object tasks use COCO val2017 images (key ``coco:<id>``, file ``{id:012d}.jpg`` in ``coco_root``); attribute
tasks use Visual Genome crops (key ``vg:<image_id>:<x>,<y>,<w>,<h>``, file ``<image_id>.jpg`` in ``vg_root``,
the raw box in ``ImageRef.crop``, cropped and square-padded by ``open_genecis_image`` exactly as upstream).
Ties are broken in favour of the target (see :func:`cirbench.metrics.stable_rank`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from cirbench import metrics as M
from cirbench.benchmarks import BENCHMARKS
from cirbench.benchmarks.annotations import (
    DataRoot,
    bad_record,
    field,
    inside,
    missing_fields,
    read_annotation_json,
)
from cirbench.benchmarks.base import (
    Benchmark,
    BenchmarkSplit,
    ImageRef,
    Part,
    Query,
    Rankings,
)
from cirbench.containment import OutsideRootError
from cirbench.errors import AnnotationError, ScoringError
from cirbench.images import open_rgb
from cirbench.options import Option
from cirbench.query_scores import QueryScores

FIX = "re-download it from https://github.com/facebookresearch/genecis (genecis/<task>.json)"
OBJECT_TASKS = ("focus_object", "change_object")
DILATION = 0.7
TIE_RULE = "stable: among equal scores the target (candidate 0) ranks first"


def _num(v: Any) -> str:
    """Canonical box coordinate: integral values without a decimal point, others via ``repr``."""
    f = float(v)
    return str(int(f)) if f.is_integer() else repr(f)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def image_key(task: str, img: Any, coco_root: DataRoot | None, vg_root: DataRoot | None, where: str) -> ImageRef:
    """The ``ImageRef`` of one image record: ``{"val_image_id"}`` or ``{"image_id", "instance_bbox"}``; its file
    must stay inside the image root (``where`` names the record in the error)."""
    if task in OBJECT_TASKS:
        if not _is_int(img["val_image_id"]):
            raise ValueError(f"'val_image_id' must be an integer, got {img['val_image_id']!r}")
        cid = img["val_image_id"]
        path = inside(coco_root, f"{cid:012d}.jpg", "COCO image", FIX, where) if coco_root else None
        return ImageRef(f"coco:{cid}", path)
    vg_id = img["image_id"]  # an int, or a string of digits in VAW-style files (BENCHMARKS.md §4.2)
    if not (_is_int(vg_id) or (isinstance(vg_id, str) and vg_id.isdigit())):
        raise ValueError(f"'image_id' must be a Visual Genome id (digits), got {vg_id!r}")
    vid, box = str(img["image_id"]), img["instance_bbox"]
    numbers = isinstance(box, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
    if not numbers or len(box) != 4:
        raise ValueError(f"'instance_bbox' must be [x, y, w, h], got {box!r}")
    key = f"vg:{vid}:{','.join(_num(v) for v in box)}"
    path = inside(vg_root, f"{vid}.jpg", "Visual Genome image", FIX, where) if vg_root else None
    return ImageRef(key, path, tuple(float(v) for v in box))


def crop_box(
    box: tuple[float, float, float, float], width: int, height: int, dilation: float = DILATION
) -> tuple[float, float, float, float]:
    """GeneCIS's dilated crop of ``[x, y, w, h]``: right/bottom derive from the *clamped* left/top.

    So boxes near the border shift rather than shrink (facebookresearch/genecis vaw_dataset.py).
    """
    x, y, w, h = box
    left = max(0.0, x - dilation * w)
    top = max(0.0, y - dilation * h)
    right = min(float(width), left + (1 + dilation) * w)
    bottom = min(float(height), top + (1 + dilation) * h)
    return left, top, right, bottom


def expand_to_square(image: Image.Image) -> Image.Image:
    """Pad to a centred square with black, as GeneCIS's ``expand2square`` (fill 0 for mode L)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    fill = 0 if image.mode == "L" else (0,) * len(image.getbands())
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def open_genecis_image(ref: ImageRef) -> Image.Image:
    """Open as RGB; an attribute-task box is cropped (dilated) and square-padded, as upstream."""
    image = open_rgb(ref)
    if ref.crop is not None:
        image = expand_to_square(image.crop(crop_box(ref.crop, *image.size)))
    return image


class GeneCIS(Benchmark):
    """GeneCIS: per-query galleries (target at index 0), R@1/2/3 per task, headline mean R@1."""

    name = "genecis"
    title = "GeneCIS"
    description = "GeneCIS (4 tasks, per-query galleries): R@1/2/3, average R@1"
    splits = ("test",)
    options = (
        Option("tasks", "choices", list(M.GENECIS_TASKS), "tasks to load", M.GENECIS_TASKS),
        Option("coco_root", "path", None, "COCO val2017 images (object tasks)", keyed=False),
        Option("vg_root", "path", None, "Visual Genome images (attribute tasks)", keyed=False),
    )
    main_metric = "avg_R@1"
    metric_names = tuple(f"{t}_R@{k}" for t in M.GENECIS_TASKS for k in M.GENECIS_KS) + ("avg_R@1",)
    leaderboard_columns = metric_names
    leaderboard_order = 3
    image_reader_id = f"genecis-crop:dilation={DILATION}"
    open_image = staticmethod(open_genecis_image)

    def _task_file(self, root: Path, task: str) -> Path:
        for p in (root / f"{task}.json", root / "genecis" / f"{task}.json"):
            if p.is_file():
                return p
        raise AnnotationError(
            f"GeneCIS task file {task}.json not found: expected {root / f'{task}.json'} or "
            f"{root / 'genecis' / f'{task}.json'}. Copy genecis/*.json from "
            "https://github.com/facebookresearch/genecis, "
            "or evaluate only the tasks you have, e.g. -p tasks=change_object,focus_object"
        )

    def read(self, root: Path | None, split: str, options: dict[str, Any]) -> BenchmarkSplit:
        if root is None:
            raise AnnotationError("GeneCIS needs a root folder holding <task>.json (or genecis/<task>.json)")
        tasks = list(options["tasks"])
        coco = DataRoot(options["coco_root"]) if options["coco_root"] else None
        vg = DataRoot(options["vg_root"]) if options["vg_root"] else None
        paths = [self._task_file(root, t) for t in tasks]
        parts, images = [], {}
        for task, path in zip(tasks, paths, strict=True):
            records = read_annotation_json(path, FIX)
            if not isinstance(records, list):
                raise AnnotationError(f"{path}: expected a JSON list of queries; {FIX}")
            queries = []
            for i, r in enumerate(records):
                missing = missing_fields(r, ("reference", "target", "condition", "gallery"))
                if missing:
                    raise bad_record(FIX, path, i, f"missing {', '.join(repr(f) for f in missing)}")
                condition = field(r, "condition", "str", FIX, path, i)
                if not condition.strip():
                    raise bad_record(FIX, path, i, "'condition' is empty")
                gallery_entries = field(r, "gallery", "list", FIX, path, i)
                if not gallery_entries:  # the target alone would be ranked first: R@1 100 for nothing
                    raise bad_record(FIX, path, i, "'gallery' is empty")
                entries = [r["reference"], r["target"], *gallery_entries]
                try:
                    refs = [image_key(task, x, coco, vg, f"{path}: record {i}") for x in entries]
                except OutsideRootError:
                    raise
                except (KeyError, TypeError, ValueError) as e:
                    raise AnnotationError(
                        f"{path}: record {i}: bad image entry for task {task} (missing or invalid {e}); "
                        "object tasks need {'val_image_id'}, attribute tasks {'image_id', 'instance_bbox'}; "
                        f"{FIX}"
                    ) from e
                listed = [x.key for x in refs[2:]]
                if len(set(listed)) != len(listed):
                    twice = next(k for k in listed if listed.count(k) > 1)
                    raise bad_record(FIX, path, i, f"'gallery' lists {twice} twice")
                for ref in refs:
                    images.setdefault(ref.key, ref)
                ref, target, *gallery = (x.key for x in refs)
                cands = (target, *gallery)
                extra = {"task": task}
                queries.append(Query(f"{task}/{i}", ref, (condition,), target, (target,), None, cands, extra))
            parts.append(Part(task, queries, None, remove_reference=False))
        layout = "nested" if any(p.parent.name == "genecis" and p.parent != root for p in paths) else "flat"
        facts = {"tie_rule": TIE_RULE}
        blockers = [
            f"{what} tasks need their images: pass -p {option}=FOLDER ({where}); scoring a rankings file does not"
            for what, option, where, given, wanted in (
                ("object", "coco_root", "COCO val2017 images", coco, OBJECT_TASKS),
                ("attribute", "vg_root", "Visual Genome images", vg, ("focus_attribute", "change_attribute")),
            )
            if given is None and any(t in wanted for t in tasks)
        ]
        return BenchmarkSplit(
            self.name, split, parts, images, options, paths, True, layout=layout, facts=facts, blockers=blockers
        )

    def metrics(self, data: BenchmarkSplit, rankings: Rankings) -> dict[str, float]:
        per_task = {}
        for part in data.parts:
            self.require_rankings(part.queries, rankings)
            per_task[part.name] = ([rankings.top[q.qid] for q in part.queries], [q.target for q in part.queries])
        return M.genecis_metrics(per_task)

    def per_query(self, data: BenchmarkSplit, rankings: Rankings) -> QueryScores:
        """R@K hits per task (NaN outside it); the headline is the plain mean of the tasks' R@1."""
        scores = QueryScores([q.qid for q in data.queries], [p.name for p in data.parts for _ in p.queries])
        self.part_hits(scores, data, rankings, M.GENECIS_KS)
        tasks = [p.name for p in data.parts]
        name = "avg_R@1" if set(tasks) >= set(M.GENECIS_TASKS) else f"avg_R@1_{len(tasks)}tasks"
        scores.derive(name, *(f"{t}_R@1" for t in tasks))
        return scores

    def derived_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """The headline mean R@1 of a row that lists the four tasks but not their average."""
        task_r1 = [f"{t}_R@1" for t in M.GENECIS_TASKS]
        if "avg_R@1" not in metrics and all(k in metrics for k in task_r1):
            return {"avg_R@1": sum(metrics[k] for k in task_r1) / len(task_r1)}
        return {}

    def normalise_image_id(self, value: Any, qid: str = "") -> str:
        """Bare ints are COCO ids of the object tasks (``coco:<id>``); attribute tasks need the ``vg:`` key."""
        s = super().normalise_image_id(value, qid)
        if isinstance(value, int) or s.isdigit():
            if not qid.split("/")[0].endswith("_object"):
                raise ScoringError(
                    f"query {qid}: bare id {value!r} is only valid for object tasks (use the vg:... key)"
                )
            return f"coco:{int(s)}"
        return s


BENCHMARKS.register(GeneCIS)
