"""FashionIQ loader (SEARLE/LinCIR, Pic2Word and starter-kit layouts) and its metrics.

Protocol (SEARLE validate.py#L94-L105): per category, gallery = the whole ``split.<cat>.<split>.json``,
reference NOT removed, every triplet scored (never de-duplicated). Captions are kept raw and unjoined: methods
join them.
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

FIX = "re-download it from https://github.com/XiaoxiaoGuo/fashion-iq (captions/, image_splits/)"

# layout -> (captions folder, image path relative to root with {cat} and {asin})
LAYOUTS = {
    "searle": ("captions", "images/{asin}.jpg"),
    "pic2word": ("json", "images/{asin}.png"),
    "starter_kit": ("captions", "resized_images/{cat}/{asin}.jpg"),
}


def detect_layout(root: Path, cat: str, split: str) -> str:
    """The layout whose caption file exists; ``captions/`` + ``resized_images/`` is the starter kit."""
    if (root / "json" / f"cap.{cat}.{split}.json").is_file():
        return "pic2word"
    if (root / "captions" / f"cap.{cat}.{split}.json").is_file():
        return "starter_kit" if (root / "resized_images").is_dir() and not (root / "images").is_dir() else "searle"
    raise AnnotationError(
        f"FashionIQ {cat} {split} captions not found under {root}. Expected "
        f"{root}/captions/cap.{cat}.{split}.json "
        f"(SEARLE/LinCIR, images/<ASIN>.jpg; starter kit, resized_images/{cat}/<ASIN>.jpg) or "
        f"{root}/json/cap.{cat}.{split}.json (Pic2Word, images/<ASIN>.png), plus "
        f"image_splits/split.{cat}.{split}.json. Get them from https://github.com/XiaoxiaoGuo/fashion-iq"
    )


class FashionIQ:
    """FashionIQ: three per-category galleries (dress, shirt, toptee), R@10/R@50 on val."""

    name = "fashioniq"
    splits = ("val", "test")
    protocol_version = "1"
    main_metric = "avg_R@10"
    metric_names = tuple(f"{c}_R@{k}" for c in M.FASHIONIQ_CATEGORIES for k in M.FASHIONIQ_KS) + tuple(
        f"avg_R@{k}" for k in M.FASHIONIQ_KS
    )

    def default_options(self) -> dict[str, Any]:
        return {"categories": list(M.FASHIONIQ_CATEGORIES)}

    def load(self, root: Path | None, split: str, options: Mapping[str, Any] | None = None) -> BenchmarkSplit:
        opts = {**self.default_options(), **(options or {})}
        if split not in self.splits:
            raise ValueError(f"FashionIQ has splits {self.splits}, not {split!r}")
        cats = [opts["categories"]] if isinstance(opts["categories"], str) else list(opts["categories"])
        bad = [c for c in cats if c not in M.FASHIONIQ_CATEGORIES]
        if bad or not cats:
            raise ValueError(f"FashionIQ categories must be among {M.FASHIONIQ_CATEGORIES}, got {cats}")
        if root is None:
            raise AnnotationError(
                "FashionIQ needs a root folder (the dataset root holding captions/ and image_splits/)"
            )
        root = Path(root)
        labelled = split != "test"
        layout = detect_layout(root, cats[0], split)
        cap_dir, img_pattern = LAYOUTS[layout]
        parts, images, files = [], {}, []
        for cat in cats:
            cap_path = root / cap_dir / f"cap.{cat}.{split}.json"
            split_path = root / "image_splits" / f"split.{cat}.{split}.json"
            for p in (cap_path, split_path):
                if not p.is_file():
                    raise AnnotationError(f"FashionIQ file missing: {p} (layout {layout}); {FIX}")
            gallery = read_annotation_json(split_path, FIX)
            if not isinstance(gallery, list) or not all(isinstance(a, str) for a in gallery):
                raise AnnotationError(f"{split_path}: expected a JSON list of ASIN strings; {FIX}")
            in_gallery = set(gallery)
            records = read_annotation_json(cap_path, FIX)
            if not isinstance(records, list):
                raise AnnotationError(f"{cap_path}: expected a JSON list of triplets; {FIX}")
            need = ["candidate", "captions"] + (["target"] if labelled else [])
            queries = []
            for i, r in enumerate(records):
                missing = [f for f in need if not isinstance(r, dict) or f not in r]
                if missing:
                    raise bad_record(FIX, cap_path, i, f"missing {', '.join(repr(f) for f in missing)}")
                caps = r["captions"]
                if not isinstance(caps, list) or not caps or not all(isinstance(c, str) for c in caps):
                    raise bad_record(FIX, cap_path, i, "'captions' is not a non-empty list of strings")
                target = r.get("target") if labelled else None
                outside = [a for a in (r["candidate"], target) if a is not None and a not in in_gallery]
                if outside:
                    raise bad_record(FIX, cap_path, i, f"images {outside} are not in {split_path.name}")
                gt = (target,) if labelled else None
                qid = f"{cat}/{i}"
                queries.append(Query(qid, r["candidate"], tuple(caps), target, gt, extra={"category": cat}))
            for asin in gallery:
                images.setdefault(asin, ImageRef(asin, root / img_pattern.format(cat=cat, asin=asin)))
            parts.append(Part(cat, queries, list(gallery), remove_reference=False))
            files += [cap_path, split_path]
        protocol = {**opts, "categories": cats, "remove_reference": False}
        protocol["gallery_sizes"] = {p.name: len(p.gallery or []) for p in parts}
        return BenchmarkSplit(self.name, split, parts, images, protocol, files, labelled, layout=layout)

    def metrics(self, data: BenchmarkSplit, rankings: Rankings) -> dict[str, float]:
        if not data.has_labels:
            raise ValueError(f"FashionIQ {data.split} has no public targets; report val")
        per_cat = {}
        for part in data.parts:
            missing = [q.qid for q in part.queries if q.qid not in rankings.top]
            if missing:
                raise ValueError(f"no ranking for {len(missing)} FashionIQ queries, e.g. {missing[:5]}")
            per_cat[part.name] = (
                [rankings.top[q.qid] for q in part.queries],
                [q.target for q in part.queries],
            )
        return M.fashioniq_metrics(per_cat)
