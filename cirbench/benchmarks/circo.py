"""CIRCO (miccunifi/CIRCO official layout, also used by SEARLE and LinCIR): loader, metrics, test-server file.

The gallery is the whole COCO 2017 unlabeled set listed in ``image_info_unlabeled2017.json`` (same for val and
test). Without that file the split still loads for scoring, but it cannot be ranked: the loader says so in
``blockers``, because CIRCO metrics only need the queries and their ground truth.

Server file (``miccunifi/CIRCO:README.md``, ``submission_examples/submission_test.json``): ``{"<id>": [50 int
ids]}`` for every test query in query order, unique ids, ``json.dumps`` default separators.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cirbench import metrics as M
from cirbench.benchmarks import BENCHMARKS
from cirbench.benchmarks.annotations import (
    DataRoot,
    bad_record,
    field,
    inside,
    items,
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
from cirbench.benchmarks.server_files import TOP_K, check_keys, check_lists, examples, problems_error
from cirbench.errors import AnnotationError, ScoringError, SubmissionError
from cirbench.io import atomic_write_bytes
from cirbench.options import Option
from cirbench.query_scores import MEAN, QueryScores

FIX = "re-download it from https://github.com/miccunifi/CIRCO (annotations/) or COCO (image info)"
GALLERY_SIZE = 123_403
TEST_QUERIES = 800
TEXT_MODES = ("relative_caption", "shared_concept+relative_caption")
IMAGE_INFO = "COCO2017_unlabeled/annotations/image_info_unlabeled2017.json"
UNKNOWN_GALLERY = (
    f"the gallery is unknown: CIRCO needs {IMAGE_INFO} under --root (or -p image_info=PATH); "
    "scoring a rankings file (`cirbench score`) does not need it"
)


class CIRCO(Benchmark):
    """CIRCO: mAP@K over several ground truths per query, COCO unlabeled2017 gallery, reference kept."""

    name = "circo"
    title = "CIRCO"
    description = "CIRCO (COCO 2017 unlabeled gallery): mAP@K over multiple ground truths"
    splits = ("val", "test")
    options = (
        Option("circo_text", "choice", "relative_caption", "the query text", TEXT_MODES, varies=True),
        Option(
            "remove_reference",
            "bool",
            False,
            "drop the reference from its ranking (not the official protocol)",
            varies=True,
        ),
        Option("image_info", "path", None, f"the gallery list (default <root>/{IMAGE_INFO})", keyed=False),
    )
    main_metric = "mAP@10"
    metric_names = tuple(f"mAP@{k}" for k in M.CIRCO_KS) + tuple(f"R@{k}" for k in M.CIRCO_KS)
    leaderboard_columns = tuple(f"mAP@{k}" for k in M.CIRCO_KS)
    leaderboard_order = 0
    server_split = "test"
    server_options = {"remove_reference": False}  # the official example keeps the reference (10 of 800 lists)

    def _find(self, root: Path, split: str) -> tuple[Path, Path]:
        """(annotation file, dataset root): ``root`` is the dataset root or its ``annotations/`` folder."""
        for ann, data_root in ((root / "annotations" / f"{split}.json", root), (root / f"{split}.json", root.parent)):
            if ann.is_file():
                return ann, data_root
        raise AnnotationError(
            f"CIRCO {split} annotations not found under {root}; expected "
            f"{root / 'annotations' / f'{split}.json'} (official/SEARLE/LinCIR layout: "
            f"<root>/annotations/{{val,test}}.json) or {root / f'{split}.json'} "
            "(root = the annotations folder). Get them from https://github.com/miccunifi/CIRCO"
        )

    def read(self, root: Path | None, split: str, options: dict[str, Any]) -> BenchmarkSplit:
        if root is None:
            raise AnnotationError("CIRCO needs a root folder (the dataset root holding annotations/)")
        ann_path, data_root = self._find(root, split)
        records = read_annotation_json(ann_path, FIX)
        if not isinstance(records, list):
            raise AnnotationError(f"{ann_path}: expected a JSON list of queries; {FIX}")
        labelled = split == "val"
        img_dir = DataRoot(data_root / "COCO2017_unlabeled" / "unlabeled2017")  # may be a symlink itself
        info_path = Path(options["image_info"] or data_root / IMAGE_INFO)
        if options["image_info"] and not info_path.is_file():
            raise AnnotationError(f"-p image_info={info_path}: no such file; pass the path of {Path(IMAGE_INFO).name}")
        images: dict[str, ImageRef] = {}
        gallery: list[str] = []
        files, blockers, warnings = [ann_path], [], []
        if info_path.is_file():
            info = read_annotation_json(info_path, FIX)
            entries = info.get("images") if isinstance(info, dict) else None
            if not isinstance(entries, list):
                raise AnnotationError(f"{info_path}: no 'images' list; {FIX}")
            for i, im in enumerate(entries):
                if missing_fields(im, ("id", "file_name")):
                    raise bad_record(FIX, info_path, i, "an image entry lacks 'id' or 'file_name'")
                key = str(field(im, "id", "int", FIX, info_path, i))
                if key in images:
                    raise bad_record(FIX, info_path, i, f"image id {key} is listed twice")
                gallery.append(key)
                images[key] = ImageRef(key, inside(img_dir, im["file_name"], "file_name", FIX, info_path, i, key))
            files.append(info_path)
            if len(gallery) != GALLERY_SIZE:
                warnings.append(f"gallery has {len(gallery)} images, expected {GALLERY_SIZE}")
        else:
            blockers.append(UNKNOWN_GALLERY)

        queries = []
        gallery_ids = set(gallery) if gallery else None
        need = ["id", "reference_img_id", "relative_caption", "shared_concept"]
        need += ["target_img_id", "gt_img_ids"] if labelled else []  # semantic_aspects: optional (2024+)
        for i, r in enumerate(records):
            missing = missing_fields(r, need)
            if missing:
                raise bad_record(FIX, ann_path, i, f"missing {', '.join(repr(f) for f in missing)}")
            qid = str(field(r, "id", "int", FIX, ann_path, i))
            ref = str(field(r, "reference_img_id", "int", FIX, ann_path, i))
            gt = tuple(str(g) for g in items(r, "gt_img_ids", "int", FIX, ann_path, i)) if labelled else None
            target = str(field(r, "target_img_id", "int", FIX, ann_path, i)) if labelled else None
            if qid != str(i):  # the official evaluator looks queries up by position
                raise bad_record(FIX, ann_path, i, f"'id' is {r['id']!r} but must equal the record index {i}")
            if labelled:
                _check_ground_truth(gt, target, gallery_ids, FIX, ann_path, i)
            cap = field(r, "relative_caption", "str", FIX, ann_path, i)
            if not cap.strip():
                raise bad_record(FIX, ann_path, i, "'relative_caption' is empty")
            concept = field(r, "shared_concept", "str", FIX, ann_path, i)
            text = cap if options["circo_text"] == "relative_caption" else f"{cap}, {concept}"
            extra: dict[str, Any] = {"shared_concept": concept}
            if labelled:
                aspects = items(r, "semantic_aspects", "str", FIX, ann_path, i) if r.get("semantic_aspects") else []
                extra["semantic_aspects"] = tuple(aspects)
            queries.append(Query(qid, ref, (text,), target=target, gt=gt, extra=extra))
            for key in (ref, *(gt or ())):
                if key not in images:
                    images[key] = ImageRef(key, inside(img_dir, f"{int(key):012d}.jpg", "image", FIX, ann_path, i, key))
        part = Part("all", queries, gallery, remove_reference=options["remove_reference"])
        facts = {
            "image_info": str(info_path),
            "gallery_known": not blockers,
            "gallery_size": len(gallery) if not blockers else None,
        }
        return BenchmarkSplit(
            self.name,
            split,
            [part],
            images,
            options,
            files,
            labelled,
            layout="official",
            facts=facts,
            blockers=blockers,
            warnings=warnings,
        )

    def metrics(self, data: BenchmarkSplit, rankings: Rankings) -> dict[str, float]:
        if not data.has_labels:
            raise ScoringError(f"CIRCO {data.split} has no public ground truth; submit it to the CIRCO server")
        preds, gts, targets, aspects = [], [], [], []
        for part in data.parts:
            self.require_rankings(part.queries, rankings)
            for q in part.queries:
                p = rankings.top[q.qid]
                preds.append(M.drop_reference(p, q.reference) if part.remove_reference else list(p))
                gts.append(q.gt or ())
                targets.append(q.target)
                aspects.append(q.extra.get("semantic_aspects", ()))
        return M.circo_metrics(preds, gts, targets, aspects)

    def per_query(self, data: BenchmarkSplit, rankings: Rankings) -> QueryScores:
        """AP@K per query (rule ``mean``), R@K hits, and AP@10 per semantic aspect (NaN for queries without it)."""
        if not data.has_labels:
            raise ScoringError(f"CIRCO {data.split} has no public ground truth: no per-query metrics")
        queries, preds = [], []
        for part in data.parts:
            self.require_rankings(part.queries, rankings)
            for q in part.queries:
                p = rankings.top[q.qid]
                queries.append((part.name, q))
                preds.append(M.drop_reference(p, q.reference) if part.remove_reference else list(p))
        scores = QueryScores([q.qid for _, q in queries], [name for name, _ in queries])
        gts, targets = [q.gt or () for _, q in queries], [q.target for _, q in queries]
        ap = {k: [M.circo_average_precision(p, g, k) for p, g in zip(preds, gts, strict=True)] for k in M.CIRCO_KS}
        for k in M.CIRCO_KS:
            scores.add(f"mAP@{k}", ap[k], MEAN)
        for k in M.CIRCO_KS:
            scores.add(f"R@{k}", M.hits_at_k(preds, targets, k))
        aspects = [q.extra.get("semantic_aspects", ()) for _, q in queries]
        present = [a for a in M.CIRCO_ASPECTS if any(a in x for x in aspects)]
        present += sorted({a for x in aspects for a in x} - set(M.CIRCO_ASPECTS))
        for a in present:
            scores.add(f"mAP@10_{a}", [v if a in x else np.nan for v, x in zip(ap[10], aspects, strict=True)], MEAN)
        return scores

    # --- rankings files ----------------------------------------------------------------------------------------
    def normalise_query_id(self, qid: Any) -> str:
        s = str(qid).strip()
        return str(int(s)) if s.lstrip("-").isdigit() else s

    def normalise_image_id(self, value: Any, qid: str = "") -> str:
        s = super().normalise_image_id(value, qid)
        if not s.isdigit():
            raise ScoringError(f"query {qid}: {value!r} is not a COCO image id")
        return str(int(s))

    # --- server file -------------------------------------------------------------------------------------------
    def write_submission(
        self, rankings: Mapping[str, Any], data: BenchmarkSplit | None, out_dir: Path, stem: str, split: str
    ) -> tuple[list[Path], list[str]]:
        notes = []
        query_ids = gallery = None
        if data is not None:
            query_ids = [q.qid for q in data.queries]
            gallery = [g for p in data.parts for g in (p.gallery or ())] or None
            if gallery is None:
                notes.append("COCO unlabeled image info not found under --root: gallery ids not checked")
        return write_circo(rankings, Path(out_dir) / self.name, stem, query_ids, gallery), notes


def _check_ground_truth(
    gt: tuple[str, ...], target: str | None, gallery: set[str] | None, fix: str, path: Path, index: int
) -> None:
    """The ground truth of one query: not empty, each id once, the target among them and, when the gallery is known,
    every id in it (a ground truth that cannot be retrieved lowers every metric silently)."""
    if not gt:
        raise bad_record(fix, path, index, "'gt_img_ids' is empty")
    if len(set(gt)) != len(gt):
        twice = next(g for g in gt if gt.count(g) > 1)
        raise bad_record(fix, path, index, f"'gt_img_ids' lists {twice} twice")
    if target not in gt:
        raise bad_record(fix, path, index, f"'target_img_id' {target} is not among 'gt_img_ids'")
    outside = [g for g in gt if gallery is not None and g not in gallery]
    if outside:
        raise bad_record(fix, path, index, f"'gt_img_ids' {', '.join(outside[:3])} are not in the gallery list")


def circo_file(rankings: Mapping[str, Any]) -> dict[str, list[int]]:
    """Stored rankings -> ``{"<query id>": [50 int image ids]}`` in query order (ints, as the example)."""
    top = rankings.get("top") or {}
    out: dict[str, list[int]] = {}
    for qid in sorted(top, key=_int_or_str):
        try:
            out[str(qid)] = [int(i) for i in top[qid][:TOP_K]]
        except (TypeError, ValueError) as e:
            raise SubmissionError(f"CIRCO query {qid}: an image id is not a COCO integer id ({e})") from e
    return out


def _int_or_str(value: str) -> tuple[int, Any]:
    return (0, int(value)) if str(value).isdigit() else (1, str(value))


def validate_circo(
    submission: Mapping[str, Any],
    *,
    query_ids: Collection[str] | None = None,
    gallery: Collection[str] | None = None,
    expected_queries: int = TEST_QUERIES,
) -> None:
    """The CIRCO file against the test split: every query, 50 unique int ids, in the gallery when known."""
    problems: list[str] = []
    check_keys(problems, submission.keys(), query_ids, expected_queries)
    bad_type = [
        q
        for q, v in submission.items()
        if not isinstance(v, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in v)
    ]
    if bad_type:
        problems.append(f"values must be lists of integer COCO ids: {examples(bad_type)}")
        raise problems_error("CIRCO file", problems)
    check_lists(problems, submission, TOP_K, gallery, "ranking")
    if problems:
        raise problems_error("CIRCO file", problems)


def write_circo(
    rankings: Mapping[str, Any],
    out_dir: Path,
    stem: str,
    query_ids: Collection[str] | None = None,
    gallery: Collection[str] | None = None,
) -> list[Path]:
    """Validate, then write ``<stem>.json`` (the CIRCO server has no documented size limit)."""
    submission = circo_file(rankings)
    validate_circo(submission, query_ids=query_ids, gallery=gallery)
    path = Path(out_dir) / f"{stem}.json"
    atomic_write_bytes(path, json.dumps(submission).encode("utf-8"))
    return [path]


BENCHMARKS.register(CIRCO)
