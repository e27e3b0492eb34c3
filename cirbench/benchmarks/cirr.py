"""CIRR (rc2) loader for the official, SEARLE/LinCIR and Pic2Word layouts, and its metrics.

Protocol (SEARLE validate.py#L193-L222): gallery = every key of ``split.rc2.<split>.json``, the reference is
removed from each ranking, R@K on ``target_hard``; Rsubset@K over the 5 group members other than the
reference.
Option ``scoring="soft"`` switches to CIRPLANT's ``target_soft`` partial credit instead.
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

FIX = "re-download it from https://github.com/Cuberick-Orion/CIRR (branch cirr_dataset)"
SPLIT_ALIASES = {"val": "val", "dev": "val", "test1": "test1", "test": "test1"}
SCORING = ("hard", "soft")


def detect_layout(root: Path, split: str) -> tuple[str, Path, Path]:
    """(layout, annotation dir, image root) for ``root``; raises naming every expected path when none fits."""
    cap = f"captions/cap.rc2.{split}.json"
    if (root / "cirr" / cap).is_file():
        return "searle", root / "cirr", root
    if (root / cap).is_file():
        if (root / "img_raw").is_dir():
            return "official", root, root / "img_raw"
        if (root / "dev").is_dir() or (root / "test1").is_dir():
            return "pic2word", root, root
        if root.name.lower() == "cirr" and ((root.parent / "dev").is_dir() or (root.parent / "test1").is_dir()):
            return "searle", root, root.parent  # root points at CIRR/cirr inside a SEARLE tree
        return "official", root, root / "img_raw"  # annotations only: images would live in img_raw/
    raise AnnotationError(
        f"CIRR {split} annotations not found under {root}. Expected one of: "
        f"{root / cap} with images in {root / 'img_raw'} (official) or {root}/dev,test1 (Pic2Word); "
        f"{root / 'cirr' / cap} with images in {root}/dev,test1 (SEARLE/LinCIR). Also needs "
        f"image_splits/split.rc2.{split}.json next to captions/. Get them from https://github.com/Cuberick-Orion/CIRR"
    )


class CIRR:
    """CIRR rc2: NLVR2 images, one split-wide gallery, reference removed, hard target (soft as an option)."""

    name = "cirr"
    splits = ("val", "test1")
    protocol_version = "1"
    main_metric = "R@1"
    metric_names = tuple(f"R@{k}" for k in M.CIRR_KS) + tuple(f"Rsubset@{k}" for k in M.CIRR_SUBSET_KS)

    def default_options(self) -> dict[str, Any]:
        return {"remove_reference": True, "scoring": "hard"}

    def load(self, root: Path | None, split: str, options: Mapping[str, Any] | None = None) -> BenchmarkSplit:
        opts = {**self.default_options(), **(options or {})}
        if split not in SPLIT_ALIASES:
            raise ValueError(f"CIRR has splits {self.splits} ('test' = 'test1'), not {split!r}")
        split = SPLIT_ALIASES[split]
        if opts["scoring"] not in SCORING:
            raise ValueError(f"CIRR scoring must be one of {SCORING}, not {opts['scoring']!r}")
        if root is None:
            raise AnnotationError("CIRR needs a root folder (the dataset root or its annotation folder)")
        layout, ann_dir, img_root = detect_layout(Path(root), split)
        cap_path = ann_dir / "captions" / f"cap.rc2.{split}.json"
        split_path = ann_dir / "image_splits" / f"split.rc2.{split}.json"
        if not split_path.is_file():
            raise AnnotationError(f"CIRR image split file missing: {split_path}; {FIX}")
        names = read_annotation_json(split_path, FIX)
        if not isinstance(names, dict):
            raise AnnotationError(f"{split_path}: expected a JSON object name -> relative path; {FIX}")
        images = {}
        for name, rel in names.items():
            rel = str(rel).removeprefix("./")
            path = img_root / (f"{rel.split('/')[0]}/{name}.png" if layout == "pic2word" else rel)
            images[name] = ImageRef(name, path)
        records = read_annotation_json(cap_path, FIX)
        if not isinstance(records, list):
            raise AnnotationError(f"{cap_path}: expected a JSON list of queries; {FIX}")
        labelled = split == "val"
        need = ["pairid", "reference", "caption", "img_set"] + (["target_hard", "target_soft"] if labelled else [])
        queries = []
        for i, r in enumerate(records):
            missing = [f for f in need if not isinstance(r, dict) or f not in r]
            if missing:
                raise bad_record(FIX, cap_path, i, f"missing {', '.join(repr(f) for f in missing)}")
            members = r["img_set"].get("members") if isinstance(r["img_set"], dict) else None
            if not isinstance(members, list):
                raise bad_record(FIX, cap_path, i, "'img_set' has no 'members' list")
            ref, target = r["reference"], r.get("target_hard")
            unknown = [x for x in [ref, target, *members] if x is not None and x not in images]
            if unknown:
                raise bad_record(FIX, cap_path, i, f"images {unknown[:3]} are not in {split_path.name}")
            if ref not in members:
                raise bad_record(FIX, cap_path, i, "the reference is not among 'img_set.members'")
            extra: dict[str, Any] = {"img_set_id": r["img_set"].get("id"), "pairid": r["pairid"]}
            if labelled:
                if not isinstance(r["target_soft"], dict):
                    raise bad_record(FIX, cap_path, i, "'target_soft' is not an object")
                extra["target_soft"] = {str(k): float(v) for k, v in r["target_soft"].items()}
            subset = tuple(m for m in members if m != ref)
            gt = (target,) if labelled else None
            queries.append(Query(str(r["pairid"]), ref, (str(r["caption"]),), target, gt, subset, extra=extra))
        protocol = {**opts, "split_file": split_path.name, "gallery_size": len(images)}
        part = Part("all", queries, list(images), remove_reference=bool(opts["remove_reference"]))
        files = [cap_path, split_path]
        return BenchmarkSplit(self.name, split, [part], images, protocol, files, labelled, layout=layout)

    def metrics(self, data: BenchmarkSplit, rankings: Rankings) -> dict[str, float]:
        if not data.has_labels:
            raise ValueError(f"CIRR {data.split} has no public labels; submit it to the CIRR test server")
        qs = data.queries
        missing = [q.qid for q in qs if q.qid not in rankings.top]
        if missing:
            raise ValueError(f"no ranking for {len(missing)} CIRR queries, e.g. {missing[:5]}")
        tops = [rankings.top[q.qid] for q in qs]
        refs = [q.reference for q in qs]
        subsets = [q.subset or () for q in qs]
        sub = [(rankings.subset or {}).get(q.qid) for q in qs] if rankings.subset is not None else None
        if data.protocol.get("scoring") == "soft":
            return M.cirr_soft_metrics(tops, refs, [q.extra["target_soft"] for q in qs], subsets, sub)
        remove = all(p.remove_reference for p in data.parts)
        return M.cirr_metrics(tops, refs, [q.target for q in qs], subsets, sub, remove_reference=remove)
