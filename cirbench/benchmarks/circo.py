"""CIRCO loader (miccunifi/CIRCO official layout, also used by SEARLE and LinCIR) and its official metrics.

The gallery is the whole COCO 2017 unlabeled set listed in ``image_info_unlabeled2017.json`` (same for val and
test). Without that file the split still loads for scoring: the gallery is then ``[]`` and
``protocol["gallery_known"]`` is False, because CIRCO metrics only need the queries and their ground truth.
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
    bad_record,
    read_annotation_json,
)

FIX = "re-download it from https://github.com/miccunifi/CIRCO (annotations/) or COCO (image info)"
GALLERY_SIZE = 123_403
TEXT_MODES = ("relative_caption", "shared_concept+relative_caption")


class CIRCO:
    """CIRCO: mAP@K over several ground truths per query, COCO unlabeled2017 gallery, reference kept."""

    name = "circo"
    splits = ("val", "test")
    protocol_version = "1"
    main_metric = "mAP@10"
    metric_names = tuple(f"mAP@{k}" for k in M.CIRCO_KS) + tuple(f"R@{k}" for k in M.CIRCO_KS)

    def default_options(self) -> dict[str, Any]:
        return {"circo_text": "relative_caption", "remove_reference": False, "image_info": None}

    def _find(self, root: Path, split: str) -> tuple[Path, Path]:
        """(annotation file, dataset root): ``root`` is the dataset root or its ``annotations/`` folder."""
        for ann, data_root in (
            (root / "annotations" / f"{split}.json", root),
            (root / f"{split}.json", root.parent),
        ):
            if ann.is_file():
                return ann, data_root
        raise AnnotationError(
            f"CIRCO {split} annotations not found under {root}; expected "
            f"{root / 'annotations' / f'{split}.json'} (official/SEARLE/LinCIR layout: "
            f"<root>/annotations/{{val,test}}.json) or {root / f'{split}.json'} "
            "(root = the annotations folder). Get them from https://github.com/miccunifi/CIRCO"
        )

    def load(self, root: Path | None, split: str, options: Mapping[str, Any] | None = None) -> BenchmarkSplit:
        opts = {**self.default_options(), **(options or {})}
        if split not in self.splits:
            raise ValueError(f"CIRCO has splits {self.splits}, not {split!r}")
        if opts["circo_text"] not in TEXT_MODES:
            raise ValueError(f"circo_text must be one of {TEXT_MODES}, not {opts['circo_text']!r}")
        if root is None:
            raise AnnotationError("CIRCO needs a root folder (the dataset root holding annotations/)")
        ann_path, data_root = self._find(Path(root), split)
        records = read_annotation_json(ann_path, FIX)
        if not isinstance(records, list):
            raise AnnotationError(f"{ann_path}: expected a JSON list of queries; {FIX}")
        labelled = split == "val"
        img_dir = data_root / "COCO2017_unlabeled" / "unlabeled2017"
        info_path = Path(
            opts["image_info"] or data_root / "COCO2017_unlabeled/annotations/image_info_unlabeled2017.json"
        )
        images: dict[str, ImageRef] = {}
        gallery: list[str] = []
        protocol: dict[str, Any] = {
            **opts,
            "image_info": str(info_path),
            "gallery_known": info_path.is_file(),
        }
        files = [ann_path]
        if info_path.is_file():
            info = read_annotation_json(info_path, FIX)
            entries = info.get("images") if isinstance(info, dict) else None
            if not isinstance(entries, list):
                raise AnnotationError(f"{info_path}: no 'images' list; {FIX}")
            for i, im in enumerate(entries):
                if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
                    raise bad_record(FIX, info_path, i, "an image entry lacks 'id' or 'file_name'")
                key = str(int(im["id"]))
                gallery.append(key)
                images[key] = ImageRef(key, img_dir / im["file_name"])
            files.append(info_path)
            if len(gallery) != GALLERY_SIZE:
                protocol["warnings"] = [f"gallery has {len(gallery)} images, expected {GALLERY_SIZE}"]
        protocol["gallery_size"] = len(gallery) if protocol["gallery_known"] else None

        queries = []
        need = ["id", "reference_img_id", "relative_caption", "shared_concept"]
        need += ["target_img_id", "gt_img_ids"] if labelled else []  # semantic_aspects: optional (2024+)
        for i, r in enumerate(records):
            missing = [f for f in need if not isinstance(r, dict) or f not in r]
            if missing:
                raise bad_record(FIX, ann_path, i, f"missing {', '.join(repr(f) for f in missing)}")
            try:
                qid = str(int(r["id"]))
                ref = str(int(r["reference_img_id"]))
                gt = tuple(str(int(g)) for g in r["gt_img_ids"]) if labelled else None
                target = str(int(r["target_img_id"])) if labelled else None
            except (TypeError, ValueError) as e:
                raise bad_record(FIX, ann_path, i, f"an image id is not an integer ({e})") from e
            if qid != str(i):  # the official evaluator looks queries up by position
                raise bad_record(FIX, ann_path, i, f"'id' is {r['id']!r} but must equal the record index {i}")
            if labelled and not gt:
                raise bad_record(FIX, ann_path, i, "'gt_img_ids' is empty")
            cap, concept = str(r["relative_caption"]), str(r["shared_concept"])
            texts = (cap,) if opts["circo_text"] == "relative_caption" else (concept, cap)
            extra = {"shared_concept": concept}
            if labelled:
                extra["semantic_aspects"] = tuple(r.get("semantic_aspects") or ())
            queries.append(Query(qid, ref, texts, target=target, gt=gt, extra=extra))
            for key in (ref, *(gt or ())):
                if key not in images:
                    images[key] = ImageRef(key, img_dir / f"{int(key):012d}.jpg")
        part = Part("all", queries, gallery, remove_reference=bool(opts["remove_reference"]))
        return BenchmarkSplit(self.name, split, [part], images, protocol, files, labelled, layout="official")

    def metrics(self, data: BenchmarkSplit, rankings: Rankings) -> dict[str, float]:
        if not data.has_labels:
            raise ValueError(f"CIRCO {data.split} has no public ground truth; submit it to the CIRCO server")
        preds, gts, targets, aspects = [], [], [], []
        for part in data.parts:
            for q in part.queries:
                if q.qid not in rankings.top:
                    raise ValueError(f"no ranking for CIRCO query {q.qid}")
                p = rankings.top[q.qid]
                preds.append(M.drop_reference(p, q.reference) if part.remove_reference else list(p))
                gts.append(q.gt or ())
                targets.append(q.target)
                aspects.append(q.extra.get("semantic_aspects", ()))
        return M.circo_metrics(preds, gts, targets, aspects)
