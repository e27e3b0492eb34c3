"""CIRR (rc2): loader for the official, SEARLE/LinCIR and Pic2Word layouts, metrics, and the test-server files.

Protocol (SEARLE validate.py#L193-L222): gallery = every key of ``split.rc2.<split>.json``, the reference is
removed from each ranking, R@K on ``target_hard``; Rsubset@K over the 5 group members other than the
reference. Option ``scoring=soft`` switches to CIRPLANT's ``target_soft`` partial credit instead.

Server files (Cuberick-Orion/CIRR:Test-split_server.md, ``demo_files/test1_pred_ranks_recall*.json``):
``{"version": "rc2", "metric": "recall" | "recall_subset", "<pairid>": [...]}`` with the pair ids in sorted order
after the two header keys, ``json.dumps`` default separators, no trailing newline, at most 5 MB each.

Option ``protocol=mieb`` scores CIRR as MIEB's CIRRIT2IRetrieval / M-BEIR's cirr_task7 do (``benchmarks/mbeir.py``):
val only, pool = every image of ``split.rc2.{train,val,test1}.json``, reference kept, positives = every
``target_soft`` entry equal to 1.0, duplicate (text, reference) queries merged, mteb's metrics.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cirbench import metrics as M
from cirbench.benchmarks import BENCHMARKS, mbeir
from cirbench.benchmarks.annotations import (
    DataRoot,
    bad_record,
    field,
    file_name,
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
    image_stem,
)
from cirbench.benchmarks.server_files import TOP_K, check_keys, check_lists, check_size, examples, problems_error
from cirbench.errors import AnnotationError, ScoringError, SubmissionError, shown
from cirbench.io import atomic_write_bytes
from cirbench.options import Option
from cirbench.query_scores import QueryScores

FIX = "re-download it from https://github.com/Cuberick-Orion/CIRR (branch cirr_dataset)"
VERSION = "rc2"
SUBSET_K = 3
MAX_BYTES = 5_000_000  # "Maximum file size 5 MB" (Cuberick-Orion/CIRR:Test-split_server.md#L50)
TEST_QUERIES = 4148
METRIC_KIND = {"recall": "top", "recall_subset": "subset"}


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


class CIRR(mbeir.MiebVariant, Benchmark):
    """CIRR rc2: NLVR2 images, one split-wide gallery, reference removed, hard target (soft as an option)."""

    name = "cirr"
    title = "CIRR"
    description = "CIRR rc2 (NLVR2 images): R@K, Rsubset@K; reference removed"
    splits = ("val", "test1")
    split_aliases = {"dev": "val", "test": "test1"}
    options = (
        Option(
            "remove_reference",
            "bool",
            True,
            "drop the reference image from its ranking (official protocol)",
            varies=True,
        ),
        Option("scoring", "choice", "hard", "hard: target_hard; soft: CIRPLANT's target_soft", ("hard", "soft")),
        mbeir.PROTOCOL_OPTION,
    )
    main_metric = "R@1"
    metric_names = tuple(f"R@{k}" for k in M.CIRR_KS) + tuple(f"Rsubset@{k}" for k in M.CIRR_SUBSET_KS)
    leaderboard_columns = (*metric_names, "Avg")
    leaderboard_order = 1
    leaderboard_notes = ("Avg = (R@5 + Rsubset@1) / 2 (CLIP4Cir convention).",)
    server_split = "test1"
    server_options = {"remove_reference": True, "protocol": mbeir.OFFICIAL}
    separate_protocols = (mbeir.view("CIRR, MIEB/M-BEIR protocol (CIRRIT2IRetrieval)"),)

    def read(self, root: Path | None, split: str, options: dict[str, Any]) -> BenchmarkSplit:
        if root is None:
            raise AnnotationError("CIRR needs a root folder (the dataset root or its annotation folder)")
        if mbeir.is_mieb(options):
            return read_mieb(self.name, root, split, options)
        layout, ann_dir, img_root = detect_layout(root, split)
        cap_path = ann_dir / "captions" / f"cap.rc2.{split}.json"
        split_path = ann_dir / "image_splits" / f"split.rc2.{split}.json"
        if not split_path.is_file():
            raise AnnotationError(f"CIRR image split file missing: {split_path}; {FIX}")
        images = _read_split_file(split_path, img_root, layout)
        labelled = split == "val"
        queries = _read_queries(cap_path, split_path.name, images, labelled)
        part = Part("all", queries, list(images), remove_reference=options["remove_reference"])
        facts = {"split_file": split_path.name, "gallery_size": len(images)}
        return BenchmarkSplit(
            self.name, split, [part], images, options, [cap_path, split_path], labelled, layout=layout, facts=facts
        )

    def metrics(self, data: BenchmarkSplit, rankings: Rankings) -> dict[str, float]:
        if not data.has_labels:
            raise ScoringError(f"CIRR {data.split} has no public labels; submit it to the CIRR test server")
        if mbeir.is_mieb(data.options):
            return mbeir.metrics(data, rankings, self.require_rankings)
        qs = data.queries
        self.require_rankings(qs, rankings)
        tops = [rankings.top[q.qid] for q in qs]
        refs = [q.reference for q in qs]
        subsets = [q.subset or () for q in qs]
        sub = [(rankings.subset or {}).get(q.qid) for q in qs] if rankings.subset is not None else None
        if data.options["scoring"] == "soft":
            return M.cirr_soft_metrics(tops, refs, [q.extra["target_soft"] for q in qs], subsets, sub)
        remove = all(p.remove_reference for p in data.parts)
        return M.cirr_metrics(tops, refs, [q.target for q in qs], subsets, sub, remove_reference=remove)

    def per_query(self, data: BenchmarkSplit, rankings: Rankings) -> QueryScores:
        """R@K and Rsubset@K hits (CIRPLANT's soft scores with ``scoring=soft``) and Avg = mean of R@5, Rsubset@1."""
        if not data.has_labels:
            raise ScoringError(f"CIRR {data.split} has no public labels: no per-query metrics")
        if mbeir.is_mieb(data.options):
            return mbeir.per_query(data, rankings, self.require_rankings)
        qs = data.queries
        self.require_rankings(qs, rankings)
        remove = all(p.remove_reference for p in data.parts)
        refs, subsets = [q.reference for q in qs], [q.subset or () for q in qs]
        full = [M.drop_reference(rankings.top[q.qid], q.reference) if remove else list(rankings.top[q.qid]) for q in qs]
        given = [(rankings.subset or {}).get(q.qid) for q in qs] if rankings.subset is not None else None
        soft = data.options["scoring"] == "soft"
        if soft:  # CIRPLANT always removes the reference first
            full = [M.drop_reference(rankings.top[q.qid], q.reference) for q in qs]
        targets = None if soft else [q.target for q in qs]
        sub = M.subset_rows(full, refs, subsets, targets, given, max(M.CIRR_SUBSET_KS))
        scores = QueryScores([q.qid for q in qs], [p.name for p in data.parts for _ in p.queries])
        for label, rows, ks in (("R", full, M.CIRR_KS), ("Rsubset", sub, M.CIRR_SUBSET_KS)):
            for k in ks:
                if soft:
                    values = [M.soft_at_k(r, q.extra["target_soft"], k) for r, q in zip(rows, qs, strict=True)]
                else:
                    values = M.hits_at_k(rows, targets, k)
                scores.add(f"{label}@{k}", values)
        scores.derive("Avg", "R@5", "Rsubset@1")
        return scores

    def query_clusters(self, data: BenchmarkSplit) -> dict[str, str] | None:
        """The image set (``img_set.id``): its queries share six images and Rsubset ranks within it."""
        sets = {q.qid: q.extra.get("img_set_id") for q in data.queries}
        if not sets or any(s is None for s in sets.values()):  # protocol=mieb's queries: by reference image
            return super().query_clusters(data)
        return {qid: f"set {s}" for qid, s in sets.items()}

    def derived_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        if "Avg" not in metrics and {"R@5", "Rsubset@1"} <= metrics.keys():
            return {"Avg": (metrics["R@5"] + metrics["Rsubset@1"]) / 2}
        return {}

    # --- rankings files ----------------------------------------------------------------------------------------
    def normalise_query_id(self, qid: Any) -> str:
        s = str(qid).strip()
        return str(int(s)) if s.lstrip("-").isdigit() else s

    def normalise_image_id(self, value: Any, qid: str = "") -> str:
        return image_stem(super().normalise_image_id(value, qid))

    def rankings_file_header(self, raw: dict[str, Any], path: Path, kind: str | None) -> str | None:
        if "version" not in raw and "metric" not in raw:
            return None
        version, metric = raw.pop("version", None), raw.pop("metric", None)
        if version != VERSION:
            raise ScoringError(f'{path}: CIRR server files need "version": "{VERSION}", got {version!r}')
        if metric not in METRIC_KIND:
            raise ScoringError(f"{path}: CIRR \"metric\" must be 'recall' or 'recall_subset', got {metric!r}")
        if kind is not None and kind != METRIC_KIND[metric]:
            raise ScoringError(f"{path}: metric {metric!r} holds {METRIC_KIND[metric]} rankings, not {kind}")
        return METRIC_KIND[metric]

    # --- server files ------------------------------------------------------------------------------------------
    def write_submission(
        self, rankings: Mapping[str, Any], data: BenchmarkSplit | None, out_dir: Path, stem: str, split: str
    ) -> tuple[list[Path], list[str]]:
        test = CIRRTestSet.from_split(data) if data is not None else None
        return write_cirr(rankings, Path(out_dir) / self.name, stem, test), []


def read_mieb(name: str, root: Path, split: str, options: dict[str, Any]) -> BenchmarkSplit:
    """CIRR val under ``protocol=mieb``: the pool of every split file, the reference kept (``mbeir.cirr_queries``)."""
    if split != "val":
        raise mbeir.refuse("CIRR", f"scores val only (MIEB's and M-BEIR's test set is CIRR val), not {split}")
    if options["scoring"] != "hard":
        raise mbeir.refuse("CIRR", "sets its own positives (every target_soft entry equal to 1.0): drop scoring")
    layout, ann_dir, img_root = detect_layout(root, split)
    paths = [ann_dir / "image_splits" / f"split.rc2.{s}.json" for s in ("train", "val", "test1")]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise AnnotationError(f"CIRR protocol=mieb pools every split's images; missing {', '.join(absent)}; {FIX}")
    pools = [_read_split_file(p, img_root, layout) for p in paths]
    images = {k: ref for pool in pools for k, ref in pool.items()}  # train-, dev-, test1- names never repeat
    cap_path = ann_dir / "captions" / "cap.rc2.val.json"
    queries, facts = mbeir.cirr_queries(_read_queries(cap_path, paths[1].name, pools[1], True), images)
    facts.update(protocol="mieb", pool_files=[p.name for p in paths], gallery_size=len(images), remove_reference=False)
    part = Part("all", queries, list(images), remove_reference=False)
    files = [cap_path, *paths]
    return BenchmarkSplit(name, split, [part], images, options, files, True, layout, facts, [], [mbeir.IMAGES_WARNING])


def _read_split_file(path: Path, img_root: Path, layout: str) -> dict[str, ImageRef]:
    """``split.rc2.<split>.json``: image name -> path relative to the image root (which it may not leave)."""
    names = read_annotation_json(path, FIX)
    if not isinstance(names, dict):
        raise AnnotationError(f"{path}: expected a JSON object name -> relative path; {FIX}")
    images, root = {}, DataRoot(img_root)
    for name, rel in names.items():
        file_name(name, "image name", FIX, path)
        if not isinstance(rel, str):
            raise AnnotationError(f"{path}: image {name!r}: the path must be a string, got {shown(rel)}; {FIX}")
        what = f"the path of image {name!r}"
        pic2word = layout == "pic2word"
        location = inside(root, rel.removeprefix("./"), what, FIX, path, key=None if pic2word else name)
        if pic2word:  # Pic2Word keeps the split folder (dev/, test1/) but names each image <name>.png
            parts = location.relative_to(os.path.normpath(root.path)).parts
            location = inside(root, f"{parts[0] if len(parts) > 1 else '.'}/{name}.png", what, FIX, path, key=name)
        images[name] = ImageRef(name, location)
    return images


def _read_queries(path: Path, split_file: str, images: dict[str, ImageRef], labelled: bool) -> list[Query]:
    """``cap.rc2.<split>.json``: every field typed, pair ids unique, every image in the split file."""
    records = read_annotation_json(path, FIX)
    if not isinstance(records, list):
        raise AnnotationError(f"{path}: expected a JSON list of queries; {FIX}")
    need = ["pairid", "reference", "caption", "img_set"] + (["target_hard", "target_soft"] if labelled else [])
    queries, seen = [], {}
    for i, r in enumerate(records):
        missing = missing_fields(r, need)
        if missing:
            raise bad_record(FIX, path, i, f"missing {', '.join(repr(f) for f in missing)}")
        pairid = field(r, "pairid", "int", FIX, path, i)
        if pairid in seen:
            raise bad_record(FIX, path, i, f"pairid {pairid} is also the pairid of record {seen[pairid]}")
        seen[pairid] = i
        ref, caption = field(r, "reference", "str", FIX, path, i), field(r, "caption", "str", FIX, path, i)
        img_set = field(r, "img_set", "dict", FIX, path, i)
        if "members" not in img_set:
            raise bad_record(FIX, path, i, "'img_set' has no 'members' list")
        members = items(img_set, "members", "str", FIX, path, i)
        target = field(r, "target_hard", "str", FIX, path, i) if labelled else None
        unknown = [x for x in [ref, target, *members] if x is not None and x not in images]
        if unknown:
            raise bad_record(FIX, path, i, f"images {unknown[:3]} are not in {split_file}")
        if ref not in members:
            raise bad_record(FIX, path, i, "the reference is not among 'img_set.members'")
        extra: dict[str, Any] = {"img_set_id": img_set.get("id"), "pairid": pairid}
        if labelled:
            soft = field(r, "target_soft", "dict", FIX, path, i)
            bad = {k: v for k, v in soft.items() if isinstance(v, bool) or not isinstance(v, (int, float))}
            if bad:
                raise bad_record(FIX, path, i, f"'target_soft' values must be numbers, got {bad}")
            extra["target_soft"] = {str(k): float(v) for k, v in soft.items()}
        subset = tuple(m for m in members if m != ref)
        gt = (target,) if labelled else None
        queries.append(Query(str(pairid), ref, (caption,), target, gt, subset, extra=extra))
    return queries


@dataclass(frozen=True)
class CIRRTestSet:
    """What the CIRR validators need from ``cap.rc2.test1.json`` and ``split.rc2.test1.json``."""

    query_ids: list[str]
    references: Mapping[str, str]
    members: Mapping[str, Collection[str]]  # img_set members (the reference is subtracted where it matters)
    gallery: Collection[str]

    @classmethod
    def from_split(cls, data: BenchmarkSplit) -> CIRRTestSet:
        queries = data.queries
        return cls(
            query_ids=[q.qid for q in queries],
            references={q.qid: q.reference for q in queries},
            members={q.qid: (q.reference, *(q.subset or ())) for q in queries},
            gallery=frozenset(g for p in data.parts for g in (p.gallery or ())),
        )


def cirr_files(rankings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Stored rankings -> (recall file, recall_subset file): top-50 names and top-3 within the group."""
    top = rankings.get("top") or {}
    subset = rankings.get("subset")
    if not subset:
        raise SubmissionError("the rankings have no CIRR subset rankings ('subset'); re-run the CIRR test1 evaluation")
    recall = {"version": VERSION, "metric": "recall"}
    recall.update({qid: list(top[qid][:TOP_K]) for qid in sorted(top, key=str)})
    sub = {"version": VERSION, "metric": "recall_subset"}
    sub.update({qid: list(subset[qid][:SUBSET_K]) for qid in sorted(subset, key=str)})
    return recall, sub


def validate_cirr(
    recall: Mapping[str, Any],
    subset: Mapping[str, Any],
    *,
    query_ids: Collection[str] | None = None,
    references: Mapping[str, str] | None = None,
    members: Mapping[str, Collection[str]] | None = None,
    gallery: Collection[str] | None = None,
    expected_queries: int = TEST_QUERIES,
) -> None:
    """Both CIRR files against the test split; inputs left None skip their checks. Raises on any problem."""
    for name, data, metric, k in (("recall", recall, "recall", TOP_K), ("recall_subset", subset, "recall_subset", 3)):
        problems: list[str] = []
        if data.get("version") != VERSION or data.get("metric") != metric:
            problems.append(f"header must be version={VERSION!r}, metric={metric!r}")
        lists = {q: v for q, v in data.items() if q not in ("version", "metric")}
        check_keys(problems, lists.keys(), query_ids, expected_queries)
        bad_type = [q for q, v in lists.items() if not isinstance(v, list) or not all(isinstance(i, str) for i in v)]
        if bad_type:
            problems.append(f"values must be lists of image names: {examples(bad_type)}")
            raise problems_error(f"CIRR {name} file", problems)
        check_lists(problems, lists, k, gallery, name)
        if references is not None:
            with_ref = [q for q, ids in lists.items() if references.get(q) in ids]
            if with_ref:
                problems.append(f"{name} lists contain the query's reference image: {examples(with_ref)}")
        if name == "recall_subset" and members is not None:
            outside = [
                q for q, ids in lists.items() if not set(ids) <= set(members.get(q, ())) - {(references or {}).get(q)}
            ]
            if outside:
                problems.append(f"subset lists not within the group members minus the reference: {examples(outside)}")
        if problems:
            raise problems_error(f"CIRR {name} file", problems)


def cirr_bytes(data: Mapping[str, Any]) -> bytes:
    """Serialised like the authors' demo files: header keys first, default separators, no trailing newline."""
    return json.dumps(dict(data)).encode("utf-8")


def write_cirr(
    rankings: Mapping[str, Any],
    out_dir: Path,
    stem: str,
    test: CIRRTestSet | None = None,
    max_bytes: int = MAX_BYTES,
) -> list[Path]:
    """Validate, then write ``<stem>.recall.json`` and ``<stem>.recall_subset.json`` (both or neither)."""
    recall, subset = cirr_files(rankings)
    validate_cirr(
        recall,
        subset,
        query_ids=test.query_ids if test else None,
        references=test.references if test else None,
        members=test.members if test else None,
        gallery=test.gallery if test else None,
    )
    paths = [Path(out_dir) / f"{stem}.recall.json", Path(out_dir) / f"{stem}.recall_subset.json"]
    blobs = [cirr_bytes(recall), cirr_bytes(subset)]
    for path, blob in zip(paths, blobs, strict=True):
        check_size(blob, max_bytes, path.name)
    for path, blob in zip(paths, blobs, strict=True):
        atomic_write_bytes(path, blob)
    return paths


BENCHMARKS.register(CIRR)
