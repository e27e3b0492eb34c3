"""GeneCIS (v0) loader and metrics: four tasks, each query ranks its own ``[target] + gallery`` candidates.

Object tasks use COCO val2017 images (key ``coco:<id>``, file ``{id:012d}.jpg`` in ``coco_root``); attribute
tasks use Visual Genome crops (key ``vg:<image_id>:<x>,<y>,<w>,<h>``, file ``<image_id>.jpg`` in ``vg_root``,
the raw box in ``ImageRef.crop``). Ties are broken in favour of the target (see
:func:`cirbench.metrics.stable_rank`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cirbench import metrics as M
from cirbench.benchmarks.base import (
    AnnotationError,
    BenchmarkSplit,
    ImageRef,
    Part,
    Query,
    Rankings,
    read_annotation_json,
)

FIX = "re-download it from https://github.com/facebookresearch/genecis (genecis/<task>.json)"
OBJECT_TASKS = ("focus_object", "change_object")


def _num(v: Any) -> str:
    """Canonical box coordinate: integral values without a decimal point, others via ``repr``."""
    f = float(v)
    return str(int(f)) if f.is_integer() else repr(f)


def image_key(task: str, img: Any, coco_root: Path | None, vg_root: Path | None) -> ImageRef:
    """The ``ImageRef`` of one image record: ``{"val_image_id"}`` or ``{"image_id", "instance_bbox"}``."""
    if task in OBJECT_TASKS:
        cid = int(img["val_image_id"])
        return ImageRef(f"coco:{cid}", coco_root / f"{cid:012d}.jpg" if coco_root else None)
    vid, box = str(img["image_id"]), img["instance_bbox"]
    if len(box) != 4:
        raise ValueError(f"'instance_bbox' must be [x, y, w, h], got {box!r}")
    key = f"vg:{vid}:{','.join(_num(v) for v in box)}"
    return ImageRef(key, vg_root / f"{vid}.jpg" if vg_root else None, tuple(float(v) for v in box))


class GeneCIS:
    """GeneCIS: per-query galleries (target at index 0), R@1/2/3 per task, headline mean R@1."""

    name = "genecis"
    splits = ("test",)
    protocol_version = "1"
    main_metric = "avg_R@1"
    metric_names = tuple(f"{t}_R@{k}" for t in M.GENECIS_TASKS for k in M.GENECIS_KS) + ("avg_R@1",)

    def default_options(self) -> dict[str, Any]:
        return {"tasks": list(M.GENECIS_TASKS), "coco_root": None, "vg_root": None}

    def _task_file(self, root: Path, task: str) -> Path:
        for p in (root / f"{task}.json", root / "genecis" / f"{task}.json"):
            if p.is_file():
                return p
        raise AnnotationError(
            f"GeneCIS task file {task}.json not found: expected {root / f'{task}.json'} or "
            f"{root / 'genecis' / f'{task}.json'}. Copy genecis/*.json from "
            "https://github.com/facebookresearch/genecis, "
            f"or evaluate only the tasks you have, e.g. options tasks=['change_object', 'focus_object']"
        )

    def load(self, root: Path | None, split: str, options: Mapping[str, Any] | None = None) -> BenchmarkSplit:
        opts = {**self.default_options(), **(options or {})}
        if split not in self.splits:
            raise ValueError(f"GeneCIS has only the split 'test', not {split!r}")
        tasks = [opts["tasks"]] if isinstance(opts["tasks"], str) else list(opts["tasks"])
        bad = [t for t in tasks if t not in M.GENECIS_TASKS]
        if bad or not tasks:
            raise ValueError(f"GeneCIS tasks must be among {M.GENECIS_TASKS}, got {tasks}")
        if root is None:
            raise AnnotationError("GeneCIS needs a root folder holding <task>.json (or genecis/<task>.json)")
        root = Path(root)
        coco = Path(opts["coco_root"]) if opts["coco_root"] else None
        vg = Path(opts["vg_root"]) if opts["vg_root"] else None
        paths = [self._task_file(root, t) for t in tasks]
        parts, images = [], {}
        for task, path in zip(tasks, paths, strict=True):
            records = read_annotation_json(path, FIX)
            if not isinstance(records, list):
                raise AnnotationError(f"{path}: expected a JSON list of queries; {FIX}")
            queries = []
            for i, r in enumerate(records):
                missing = [
                    f for f in ("reference", "target", "condition", "gallery") if not isinstance(r, dict) or f not in r
                ]
                if missing:
                    raise AnnotationError(
                        f"{path}: record {i}: missing {', '.join(repr(f) for f in missing)}; "
                        f"the file is damaged or edited, {FIX}"
                    )
                try:
                    refs = [image_key(task, x, coco, vg) for x in [r["reference"], r["target"], *r["gallery"]]]
                except (KeyError, TypeError, ValueError) as e:
                    raise AnnotationError(
                        f"{path}: record {i}: bad image entry for task {task} (missing or invalid {e}); "
                        "object tasks need {'val_image_id'}, attribute tasks {'image_id', 'instance_bbox'}; "
                        f"{FIX}"
                    ) from e
                for ref in refs:
                    images.setdefault(ref.key, ref)
                ref, target, *gallery = (x.key for x in refs)
                cands = (target, *gallery)
                extra = {"task": task}
                queries.append(Query(f"{task}/{i}", ref, (str(r["condition"]),), target, (target,), None, cands, extra))
            parts.append(Part(task, queries, None, remove_reference=False))
        protocol = {
            **opts,
            "tasks": tasks,
            "coco_root": str(coco) if coco else None,
            "vg_root": str(vg) if vg else None,
        }
        protocol["tie_rule"] = "stable: among equal scores the target (candidate 0) ranks first"
        layout = "nested" if any(p.parent.name == "genecis" and p.parent != root for p in paths) else "flat"
        return BenchmarkSplit(self.name, split, parts, images, protocol, paths, True, layout=layout)

    def metrics(self, data: BenchmarkSplit, rankings: Rankings) -> dict[str, float]:
        per_task = {}
        for part in data.parts:
            missing = [q.qid for q in part.queries if q.qid not in rankings.top]
            if missing:
                raise ValueError(f"no ranking for {len(missing)} GeneCIS queries, e.g. {missing[:5]}")
            per_task[part.name] = (
                [rankings.top[q.qid] for q in part.queries],
                [q.target for q in part.queries],
            )
        return M.genecis_metrics(per_task)
