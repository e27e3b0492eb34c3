"""Make Pic2Word's COCO query set (``coco_eval.csv`` + ``val2017_masked/``) from ``instances_val2017.json``, seeded.

Pic2Word releases no CSV: its ``data/coco/prepare_data.py`` draws one object per image with an unseeded
``random.sample``, so every user evaluates a different query set (MORE_BENCHMARKS_AND_METHODS.md §B.1, §B.7). This
module follows that script's semantics step for step, with the draw made from ``random.Random(seed)``:

- images in order of their first annotation; per image the distinct category names in order of first appearance;
- candidates: instances whose bbox area ``(x2 - x1) * (y2 - y1)`` (floats) is in ``(0.05, 0.5 * H * W)``, crowd
  annotations included; one drawn with ``rng.sample(candidates, k=1)``;
- the drawn instance's mask (pycocotools, as ``COCO.annToMask``) keeps its pixels, every other pixel becomes 255,
  and the result is saved as JPEG with PIL's defaults under ``val2017_masked/<file name>``;
- the row ``%012d.jpg,x1;y1;x2;y2 ,class,others`` (the box as the JSON's numbers, trailing space kept; the query's
  class removed from the others), the file sorted by id.

With ``random.seed(s)`` set before it, the upstream script draws exactly what ``seed=s`` draws here. The draw's
identity (seed, the instances file's hash, the CSV's hash) goes to ``coco_prepare.json``, which the benchmark reads
to name the draw in every result; a rerun with the same identity resumes (masked images already written are kept).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cirbench.benchmarks.annotations import (
    DataRoot,
    field,
    file_name,
    inside,
    items,
    missing_fields,
    read_annotation_json,
)
from cirbench.errors import AnnotationError, DataError, UsageError, shown
from cirbench.identity import file_sha256
from cirbench.image_limits import open_image
from cirbench.io import atomic_write, atomic_write_json, atomic_write_text, read_json
from cirbench.options import seed_option

FIX = "use COCO's annotations/instances_val2017.json (https://cocodataset.org/#download)"
RECORD = "coco_prepare.json"
CSV_NAME = "coco_eval.csv"
MAX_SIDE = 1 << 16  # pixels: beyond any COCO image (val2017: 640 at most)


@dataclass(frozen=True)
class CocoQuery:
    """One drawn row: the image, the drawn instance (its raw bbox corners and annotation) and the other classes."""

    image_id: int
    file_name: str
    height: int
    width: int
    corners: tuple[Any, Any, Any, Any]  # x1, y1, x1 + w, y1 + h with the JSON's own number types
    query_class: str
    others: tuple[str, ...]
    annotation: dict[str, Any]

    def csv_row(self) -> str:
        box = ";".join(str(v) for v in self.corners)
        return f"{self.image_id:012d}.jpg,{box} ,{self.query_class},{';'.join(self.others)}"


def load_instances(path: Path) -> dict[str, Any]:
    """The instances file, its records checked (typed fields, unique image and category ids)."""
    data = read_annotation_json(path, FIX)
    _need(data, ("images", "annotations", "categories"), path, "the file")
    images, names = {}, {}
    for i, record in enumerate(items(data, "images", "dict", FIX, path, 0)):
        _need(record, ("id", "file_name", "height", "width"), path, f"image {i}")
        image_id = field(record, "id", "int", FIX, path, i)
        if image_id in images:
            raise AnnotationError(f"{path}: image id {image_id} appears twice; {FIX}")
        images[image_id] = {
            "file_name": file_name(field(record, "file_name", "str", FIX, path, i), "file_name", FIX, path, i),
            "height": field(record, "height", "int", FIX, path, i),
            "width": field(record, "width", "int", FIX, path, i),
        }
        if not all(0 < images[image_id][side] <= MAX_SIDE for side in ("height", "width")):
            raise AnnotationError(
                f"{path}: image {i}: height and width must be in 1..{MAX_SIDE} pixels, got "
                f"{shown(record['height'])} x {shown(record['width'])}; {FIX}"
            )
    for i, record in enumerate(items(data, "categories", "dict", FIX, path, 0)):
        _need(record, ("id", "name"), path, f"category {i}")
        category = field(record, "id", "int", FIX, path, i)
        if category in names:
            raise AnnotationError(f"{path}: category id {category} appears twice; {FIX}")
        names[category] = field(record, "name", "str", FIX, path, i)
    annotations = items(data, "annotations", "dict", FIX, path, 0)
    for i, record in enumerate(annotations):
        _need(record, ("image_id", "category_id", "bbox", "segmentation"), path, f"annotation {i}")
        bbox = field(record, "bbox", "list", FIX, path, i)
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            raise AnnotationError(f"{path}: annotation {i}: bbox {bbox!r} is not four numbers; {FIX}")
        if field(record, "image_id", "int", FIX, path, i) not in images:
            raise AnnotationError(f"{path}: annotation {i}: image_id {record['image_id']} is not an image; {FIX}")
        if field(record, "category_id", "int", FIX, path, i) not in names:
            raise AnnotationError(f"{path}: annotation {i}: category_id {record['category_id']} is unknown; {FIX}")
        image = images[record["image_id"]]
        if problem := segmentation_problem(record["segmentation"], image["height"], image["width"]):
            raise AnnotationError(f"{path}: annotation {i}: segmentation {problem}; {FIX}")
    return {"images": images, "names": names, "annotations": annotations}


def _need(record: Any, names: tuple[str, ...], path: Path, what: str) -> None:
    if lacking := missing_fields(record, names):
        raise AnnotationError(f"{path}: {what} lacks {', '.join(lacking)}; not a COCO instances file? {FIX}")


def segmentation_problem(segmentation: Any, height: int, width: int) -> str | None:
    """Why a segmentation cannot be rasterised as COCO's (None when it can), checked before pycocotools sees it: its
    C code crashes the process on coordinates far outside the image and fails obscurely on other shapes.

    Polygons: a non-empty list of lists of an even number (at least 6) of finite numbers within one image size of
    the image. RLE: ``{"size": [height, width], "counts": ...}`` with the image's own size; uncompressed counts are
    non-negative integers adding up to height x width, compressed ones a string (decoded, and checked, later)."""
    if isinstance(segmentation, list):
        if not segmentation:
            return "is an empty list of polygons"
        for polygon in segmentation:
            if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
                return f"polygon {shown(polygon)} is not a list of at least 3 x, y pairs"
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in polygon):
                return f"polygon {shown(polygon)} holds a value that is not a finite number"
            xs, ys = polygon[0::2], polygon[1::2]
            if min(xs) < -width or max(xs) > 2 * width or min(ys) < -height or max(ys) > 2 * height:
                return f"polygon {shown(polygon)} lies outside the {width}x{height} image"
        return None
    if not isinstance(segmentation, dict) or "counts" not in segmentation or "size" not in segmentation:
        return f"{shown(segmentation)} is neither a list of polygons nor an RLE with 'size' and 'counts'"
    if segmentation["size"] != [height, width]:
        return f"RLE size {shown(segmentation['size'])} is not the image's [{height}, {width}]"
    counts = segmentation["counts"]
    if isinstance(counts, str):
        return None
    if not isinstance(counts, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts
    ):
        return "RLE counts must be a string or a list of non-negative integers"
    if sum(counts) != height * width:
        return f"RLE counts add up to {sum(counts)}, not {height} x {width} pixels"
    return None


def draw_queries(instances: dict[str, Any], seed: int) -> list[CocoQuery]:
    """One query per image that has a candidate object, in the upstream script's order and with its draw."""
    by_image: dict[int, list[tuple[tuple[Any, Any, Any, Any], str, dict[str, Any]]]] = {}
    for ann in instances["annotations"]:
        x, y, w, h = ann["bbox"]
        label = instances["names"][ann["category_id"]]
        by_image.setdefault(ann["image_id"], []).append(((x, y, x + w, y + h), label, ann))
    rng = random.Random(seed)
    queries = []
    for image_id, anns in by_image.items():
        labels = list(dict.fromkeys(label for _, label, _ in anns))
        image = instances["images"][image_id]
        area_image = image["height"] * image["width"]
        candidates = [a for a in anns if 0.05 < _area(a[0]) < 0.5 * area_image]
        if not candidates:
            continue
        (corners, label, ann) = rng.sample(candidates, k=1)[0]
        labels.remove(label)
        queries.append(
            CocoQuery(image_id, image["file_name"], image["height"], image["width"], corners, label, tuple(labels), ann)
        )
    return queries


def _area(corners: tuple[Any, Any, Any, Any]) -> float:
    x1, y1, x2, y2 = (float(v) for v in corners)
    return (x2 - x1) * (y2 - y1)


def csv_text(queries: list[CocoQuery]) -> str:
    """``coco_eval.csv`` as the upstream script leaves it: header, rows sorted by id."""
    rows = sorted(queries, key=lambda q: f"{q.image_id:012d}.jpg")
    return "id,query_regions,query_class,classes\n" + "".join(q.csv_row() + "\n" for q in rows)


def instance_mask(annotation: dict[str, Any], height: int, width: int) -> np.ndarray:
    """The instance's binary mask (H, W) uint8, as pycocotools' ``COCO.annToMask`` makes it."""
    try:
        from pycocotools import mask as coco_mask
    except ImportError:
        raise UsageError("making the COCO query set needs pycocotools: pip install 'cirbench[coco]'") from None
    segmentation = annotation["segmentation"]
    if problem := segmentation_problem(segmentation, height, width):
        raise DataError(f"annotation {annotation.get('id', '?')}: segmentation {problem}; {FIX}")
    try:
        if isinstance(segmentation, list):  # polygons
            rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation["counts"], list):  # uncompressed RLE
            rle = coco_mask.frPyObjects(segmentation, height, width)
        else:  # compressed RLE
            rle = segmentation
        mask = coco_mask.decode(rle)
    except Exception as error:  # noqa: BLE001 - pycocotools raises bare Exception ("input type is not supported")
        raise DataError(
            f"annotation {annotation.get('id', '?')}: pycocotools cannot decode its segmentation "
            f"({shown(str(error))}); {FIX}"
        ) from None
    if mask.shape[:2] != (height, width):
        raise DataError(f"annotation {annotation.get('id', '?')}: its mask is {mask.shape[:2]}, not {height}x{width}")
    return mask


def masked_image(source: Path, query: CocoQuery) -> Image.Image:
    """The image with every pixel outside the drawn instance set to 255 (the image's own mode kept)."""
    try:
        with open_image(source) as handle:  # the pixel budget first (a LimitError names the file)
            pixels = np.array(handle)
    except OSError as error:
        raise DataError(f"cannot read {source} ({' '.join(str(error).split())}); it is a COCO val2017 image") from None
    if pixels.shape[:2] != (query.height, query.width):
        raise DataError(
            f"{source} is {pixels.shape[1]}x{pixels.shape[0]} but instances_val2017.json says "
            f"{query.width}x{query.height}; the image or the annotation file is not COCO val2017's"
        )
    mask = instance_mask(query.annotation, query.height, query.width)
    if pixels.ndim == 3:
        mask = mask[:, :, None]
    try:
        return Image.fromarray(pixels * mask + (1 - mask) * 255)
    except TypeError as error:
        raise DataError(f"{source}: cannot save a masked image of {pixels.dtype} {pixels.shape} ({error})") from None


def prepare_coco(
    root: Path,
    instances: Path | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write ``root/coco_eval.csv`` and ``root/val2017_masked/`` from ``root/val2017/`` and the instances file.

    Returns the draw's record (also in ``root/coco_prepare.json``): seed, hashes, query and image counts."""
    seed = seed_option("the seed of the object draw").parse(seed, "data prepare-coco --seed")
    instances = instances or root / "annotations" / "instances_val2017.json"
    if not instances.is_file():
        raise AnnotationError(f"{instances} not found; pass --instances, {FIX}")
    images_dir, masked_dir = root / "val2017", root / "val2017_masked"
    if not images_dir.is_dir():
        raise DataError(f"{images_dir} not found: the COCO val2017 images (https://cocodataset.org/#download)")
    identity = {"seed": seed, "instances_sha256": file_sha256(instances), "maker": "cirbench data prepare-coco"}
    record_path, csv_path = root / RECORD, root / CSV_NAME
    _claim(root, record_path, csv_path, masked_dir, identity, overwrite)
    queries = draw_queries(load_instances(instances), seed)
    sources = DataRoot(images_dir)
    atomic_write_json(record_path, {**identity, "status": "running"})
    written = kept = 0
    for i, query in enumerate(queries, 1):
        target = masked_dir / query.file_name
        if target.is_file() and not overwrite:
            kept += 1  # written by an interrupted run of the same draw (writes are atomic)
        else:
            image = masked_image(inside(sources, query.file_name, "file_name", FIX, instances), query)
            atomic_write(target, lambda handle, image=image: image.save(handle, format="JPEG"))
            written += 1
        if progress is not None:
            progress(i, len(queries))
    atomic_write_text(csv_path, csv_text(queries))
    record = {
        **identity,
        "status": "complete",
        "queries": len(queries),
        "masked_written": written,
        "masked_kept": kept,
        "csv_sha256": file_sha256(csv_path),
    }
    atomic_write_json(record_path, record)
    return record


def _claim(root: Path, record_path: Path, csv_path: Path, masked: Path, identity: dict, overwrite: bool) -> None:
    """Refuse to mix two draws: existing outputs must come from the same seed and instances file (then resume)."""
    if overwrite or not (record_path.exists() or csv_path.exists() or masked.exists()):
        return
    try:
        previous = read_json(record_path) if record_path.is_file() else None
    except (OSError, ValueError) as error:
        raise UsageError(
            f"{record_path}: cannot read the record of the query set there ({' '.join(str(error).split())}); pass "
            "--overwrite to make the set again, or another --root"
        ) from None
    same = isinstance(previous, dict) and all(previous.get(k) == v for k, v in identity.items())
    if not same:
        made = f"seed {previous.get('seed')}" if isinstance(previous, dict) else "another tool (no coco_prepare.json)"
        raise UsageError(
            f"{root} already holds a COCO query set made by {made}; pass --overwrite to replace it, or another --root"
        )


def draw_record(csv_path: Path) -> dict[str, Any] | None:
    """The record of the cirbench draw that made ``csv_path``, or None when it was made otherwise or edited since."""
    record_path = csv_path.parent / RECORD
    try:
        record = read_json(record_path)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("csv_sha256") != file_sha256(csv_path):
        return None
    return record
