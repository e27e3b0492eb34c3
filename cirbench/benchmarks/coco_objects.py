"""Pic2Word's COCO object composition (``--eval-mode coco``): an object crop + the other classes -> the whole image.

Protocol (MORE_BENCHMARKS_AND_METHODS.md §B; google-research/composed_image_retrieval@8c05329):

- ``coco_eval.csv`` (``id,query_regions,query_class,classes``) is made by Pic2Word's ``data/coco/prepare_data.py``
  from ``instances_val2017.json``: per val2017 image one object drawn at random (no seed) among those whose bbox
  area is in (0.05, 0.5 H W); that instance's mask, white outside, is saved in ``val2017_masked/``. No CSV is
  released, so every run is a different draw (B.7): cirbench records the CSV's hash and warns when it does not hold
  the 4,765 rows of a full draw.
- Query image: the box ``int(float(x))``-truncated, cropped from the *masked* image and squashed to a square
  (``Resize((n_px, n_px))``, eval_retrieval.py#L158-L162); cirbench squashes to 224 x 224 (``n_px`` of ViT-L/14,
  Pic2Word's backbone), which a 224-px backbone's own resize + centre crop then leave untouched. Targets: the
  original val2017 images with the backbone's usual transform.
- Texts (src/data.py#L298-L309, §B.3): the composed sentence names the query class too,
  ``"a photo of * and {class} and {others joined by ' and '}"`` (fixed for pseudo-word methods through
  ``benchmarks.prompts``); the text-only sentence is ``"a photo of {class} and {others}"``. An empty ``classes``
  field gives ``others = [""]``, so the sentence ends in ``" and "``, as upstream.
- Gallery: the target images of all rows; the ground truth of row i is its own image. Metric (get_metrics_coco,
  eval_utils.py#L527-L541): hit rate R@K of the query -> image direction, K in {1, 5, 10, 50, 100}.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from PIL import Image

from cirbench.benchmarks import BENCHMARKS
from cirbench.benchmarks.annotations import DataRoot, file_name, inside, read_text
from cirbench.benchmarks.base import Benchmark, BenchmarkSplit, ImageRef, Part, Query, Rankings
from cirbench.benchmarks.coco_prepare import draw_record
from cirbench.benchmarks.prompts import IMAGE_SLOT
from cirbench.benchmarks.ranks import known_depth, part_ranks
from cirbench.errors import AnnotationError, ScoringError, shown
from cirbench.images import open_rgb
from cirbench.query_scores import QueryScores

FIX = "make it with `cirbench data prepare-coco --root DIR --seed 0` (or Pic2Word's data/coco/prepare_data.py)"
HEADER = ["id", "query_regions", "query_class", "classes"]
KS = (1, 5, 10, 50, 100)
REGION_SIZE = 224
FULL_DRAW = 4_765
MAX_SIDE = 1 << 16  # a box coordinate beyond any image (COCO val2017's widest side is 640)


def open_region(ref: ImageRef) -> Image.Image:
    """A target as RGB; a query region cropped from its masked image and squashed to REGION_SIZE x REGION_SIZE."""
    image = open_rgb(ref)
    if ref.crop is None:
        return image
    region = image.crop(tuple(int(v) for v in ref.crop))
    return region.resize((REGION_SIZE, REGION_SIZE), Image.Resampling.BICUBIC)


def find_csv(root: Path) -> Path:
    """``coco_eval.csv`` in ``root`` (Pic2Word's data/coco) or ``root/coco`` (Pic2Word's data/)."""
    for path in (root / "coco_eval.csv", root / "coco" / "coco_eval.csv"):
        if path.is_file():
            return path
    raise AnnotationError(
        f"Pic2Word COCO query file not found: expected {root / 'coco_eval.csv'} (root = Pic2Word's data/coco, with "
        f"val2017/ and val2017_masked/) or {root / 'coco' / 'coco_eval.csv'}; it is not released: {FIX}"
    )


def _draw(path: Path) -> str:
    """Which draw of query objects the CSV holds: a seeded cirbench draw when its record matches, else unknown."""
    record = draw_record(path)
    if record is None:
        return "Pic2Word draws the query objects without a seed: compare runs on one CSV (its hash is keyed)"
    return f"cirbench data prepare-coco --seed {record['seed']} (instances sha256 {record['instances_sha256'][:12]})"


def read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """The CSV's rows by line number (``annotations.read_text``: size, UTF-8, a BOM dropped); a wrong header, a row
    with a field missing or one too many, or a NUL is refused naming the row (csv would fill in None silently)."""
    text = read_text(path, FIX)
    if "\0" in text:
        raise AnnotationError(f"{path}: holds a NUL character; the file is damaged, {FIX}")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames != HEADER:
        raise AnnotationError(f"{path}: the header must be {','.join(HEADER)}, got {shown(reader.fieldnames)}; {FIX}")
    rows = []
    try:
        for row in reader:
            number = reader.line_num
            if None in row or any(row[name] is None for name in HEADER):
                got = len(HEADER) + len(row.get(None) or ()) - sum(row[name] is None for name in HEADER)
                raise AnnotationError(
                    f"{path}: row {number}: {got} fields, expected {len(HEADER)} ({','.join(HEADER)}); the file is "
                    f"damaged or edited (a ',' inside a field?), {FIX}"
                )
            rows.append((number, row))
    except csv.Error as error:
        raise AnnotationError(f"{path}: row {reader.line_num}: {error}; {FIX}") from None
    if not rows:
        raise AnnotationError(f"{path}: no query rows under the header; {FIX}")
    return rows


def _row(path: Path, number: int, row: dict[str, str]) -> tuple[str, tuple[int, int, int, int], str, list[str]]:
    name = file_name(row["id"], "id", FIX, path, number)
    if not (name.endswith(".jpg") and name[:-4].isascii() and name[:-4].isdigit()):
        raise AnnotationError(
            f"{path}: row {number}: id {shown(name)} is not a val2017 file name like 000000000139.jpg"
        )
    try:
        box = tuple(int(float(v)) for v in row["query_regions"].split(";"))
    except (ValueError, OverflowError):  # not a number, NaN, inf
        box = ()
    if any(v < 0 or v > MAX_SIDE for v in box):
        box = ()
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise AnnotationError(
            f"{path}: row {number}: query_regions {shown(row['query_regions'])} is not 'x1;y1;x2;y2' with a non-empty "
            f"box of pixels in [0, {MAX_SIDE}] after truncation (Pic2Word cannot crop it either); {FIX}"
        )
    query_class = row["query_class"].strip()
    if not query_class:
        raise AnnotationError(f"{path}: row {number}: empty query_class; {FIX}")
    others = row["classes"].split(";") if row["classes"] else [""]
    return name, box, query_class, others


class Pic2WordCOCO(Benchmark):
    """Object composition on COCO val2017: masked object crop + the image's other classes -> the image."""

    name = "pic2word-coco"
    title = "COCO object composition (Pic2Word)"
    description = "Pic2Word COCO: object crop + 'and {other classes}' -> its image; R@K"
    splits = ("val",)
    main_metric = "R@1"
    metric_names = tuple(f"R@{k}" for k in KS)
    leaderboard_columns = ("R@1", "R@5", "R@10")
    published_split = "val"
    leaderboard_order = 6
    leaderboard_notes = ("Each coco_eval.csv is a different random draw of query objects (Pic2Word sets no seed).",)
    image_reader_id = f"pic2word-coco-region:squash={REGION_SIZE}:masked-crop"
    open_image = staticmethod(open_region)
    needs_positive_ranks = True

    def read(self, root: Path | None, split: str, options: dict[str, Any]) -> BenchmarkSplit:
        if root is None:
            raise AnnotationError("pic2word-coco needs --root: Pic2Word's data/coco folder (coco_eval.csv, val2017/)")
        path = find_csv(root)
        base = path.parent
        images_dir, masked_dir = base / "val2017", base / "val2017_masked"
        images_root, masked_root = DataRoot(images_dir), DataRoot(masked_dir)
        rows = [(number, *_row(path, number, row)) for number, row in read_rows(path)]
        queries, images, gallery = [], {}, []
        for number, name, box, query_class, others in rows:
            image_id = str(int(name[:-4]))
            if image_id in images:
                raise AnnotationError(f"{path}: {name} has two rows; Pic2Word draws one object per image; {FIX}")
            region = f"region:{image_id}"
            images[image_id] = ImageRef(image_id, inside(images_root, name, "id", FIX, path, f"row {number}"))
            masked = inside(masked_root, name, "id", FIX, path, f"row {number}")
            images[region] = ImageRef(region, masked, tuple(float(v) for v in box))
            gallery.append(image_id)
            joined = " and ".join(others)
            queries.append(
                Query(
                    qid=image_id,
                    reference=region,
                    texts=(f"a photo of {query_class} and {joined}",),
                    target=image_id,
                    gt=(image_id,),
                    extra={"query_class": query_class},
                    prompt=f"a photo of {IMAGE_SLOT} and {query_class} and {joined}",
                )
            )
        blockers = [
            f"{folder} not found: {why}"
            for folder, why in (
                (images_dir, "the COCO val2017 images (https://cocodataset.org)"),
                (masked_dir, f"the masked images written with the CSV; {FIX}"),
            )
            if not folder.is_dir()
        ]
        warnings = (
            [] if len(rows) == FULL_DRAW else [f"{path.name} has {len(rows)} queries; a full draw has {FULL_DRAW}"]
        )
        facts = {
            "gallery_size": len(gallery),
            "query_image": f"masked crop squashed to {REGION_SIZE}x{REGION_SIZE} (Pic2Word's Resize((n_px, n_px)))",
            "prompt": f"a photo of {IMAGE_SLOT} and {{class}} and {{others}}",
            "text_only": "a photo of {class} and {others}",
            "draw": _draw(path),
        }
        part = Part("all", queries, gallery, remove_reference=False)
        return BenchmarkSplit(
            self.name,
            split,
            [part],
            images,
            options,
            [path],
            True,
            layout="pic2word",
            facts=facts,
            blockers=blockers,
            warnings=warnings,
        )

    def metrics(self, data: BenchmarkSplit, rankings: Rankings) -> dict[str, float]:
        (part,) = data.parts
        self.require_rankings(part.queries, rankings)
        rows = part_ranks(part, rankings)
        depth = known_depth(rows)
        hits = [row.ranks[0] if row.ranks else None for row in rows]
        return {f"R@{k}": 100.0 * sum(h is not None and h < k for h in hits) / len(hits) for k in KS if k <= depth}

    def normalise_image_id(self, value: Any, qid: str = "") -> str:
        """COCO ids as ints or digits (``139``, ``"000000000139"``, ``"000000000139.jpg"``) -> ``"139"``."""
        text = super().normalise_image_id(value, qid).removesuffix(".jpg")
        if not text.isdigit():
            raise ScoringError(f"query {qid}: {value!r} is not a COCO image id")
        return str(int(text))

    def normalise_query_id(self, qid: Any) -> str:
        text = str(qid).strip().removesuffix(".jpg")
        return str(int(text)) if text.isdigit() else text

    def per_query(self, data: BenchmarkSplit, rankings: Rankings) -> QueryScores:
        """Per query: whether its target is in the top K (the hit rate's terms)."""
        (part,) = data.parts
        self.require_rankings(part.queries, rankings)
        rows = part_ranks(part, rankings)
        depth = known_depth(rows)
        hits = [row.ranks[0] if row.ranks else None for row in rows]
        scores = QueryScores([q.qid for q in part.queries], [part.name] * len(part.queries))
        for k in (k for k in KS if k <= depth):
            scores.add(f"R@{k}", [int(h is not None and h < k) for h in hits])
        return scores


BENCHMARKS.register(Pic2WordCOCO)
