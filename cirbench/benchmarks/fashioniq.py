"""FashionIQ (SEARLE/LinCIR, Pic2Word and starter-kit layouts): loader, metrics, caption joining, prediction files.

Protocol (SEARLE validate.py#L94-L105): per category, gallery = the whole ``split.<cat>.<split>.json``,
reference NOT removed, every triplet scored (never de-duplicated). Captions are kept raw and unjoined in the query;
``query_texts`` joins them as the method asks (``CAPTION_JOINS``).

Option ``protocol=mieb`` scores FashionIQ as MIEB's FashionIQIT2IRetrieval / M-BEIR's fashioniq_task7 do
(``benchmarks/mbeir.py``): the three categories' val queries as one set, one text per query (methods' caption
joining does not apply), duplicates merged, one pool of every category's and split's images, the reference kept.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from cirbench import metrics as M
from cirbench.benchmarks import BENCHMARKS, mbeir
from cirbench.benchmarks.annotations import (
    DataRoot,
    bad_record,
    file_name,
    inside,
    items,
    missing_fields,
    read_annotation_json,
)
from cirbench.benchmarks.base import (
    CAPTION_JOINS,
    Benchmark,
    BenchmarkSplit,
    ImageRef,
    Part,
    Query,
    Rankings,
    image_stem,
)
from cirbench.benchmarks.server_files import TOP_K, check_keys, check_lists, problems_error
from cirbench.errors import AnnotationError, OptionError, ScoringError, SubmissionError
from cirbench.io import atomic_write_bytes
from cirbench.options import Option
from cirbench.query_scores import QueryScores

MIEB_POOL = 74_381  # FashionIQIT2IRetrieval's corpus = M-BEIR's pool (EMBEDDERS_AND_MIEB.md §2)
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


class FashionIQ(mbeir.MiebVariant, Benchmark):
    """FashionIQ: three per-category galleries (dress, shirt, toptee), R@10/R@50 on val."""

    name = "fashioniq"
    title = "FashionIQ"
    description = "FashionIQ (dress, shirt, toptee): R@10/R@50 per category; reference kept"
    splits = ("val", "test")
    options = (
        Option("categories", "choices", list(M.FASHIONIQ_CATEGORIES), "categories to load", M.FASHIONIQ_CATEGORIES),
        mbeir.PROTOCOL_OPTION,
    )
    main_metric = "avg_R@10"
    metric_names = tuple(f"{c}_R@{k}" for c in M.FASHIONIQ_CATEGORIES for k in M.FASHIONIQ_KS) + tuple(
        f"avg_R@{k}" for k in M.FASHIONIQ_KS
    )
    leaderboard_columns = metric_names
    published_split = "val"
    leaderboard_order = 2
    separate_protocols = (mbeir.view("FashionIQ, MIEB/M-BEIR protocol (FashionIQIT2IRetrieval)"),)

    def read(self, root: Path | None, split: str, options: dict[str, Any]) -> BenchmarkSplit:
        if root is None:
            raise AnnotationError(
                "FashionIQ needs a root folder (the dataset root holding captions/ and image_splits/)"
            )
        if mbeir.is_mieb(options):
            return self._read_mieb(root, split, options)
        cats = list(options["categories"])
        labelled = split != "test"
        layout = detect_layout(root, cats[0], split)
        parts, images, files = [], {}, []
        image_roots: dict[str, DataRoot] = {}
        for cat in cats:
            cap_path = root / LAYOUTS[layout][0] / f"cap.{cat}.{split}.json"
            if not cap_path.is_file():  # the captions are named first when both files are missing
                raise AnnotationError(f"FashionIQ file missing: {cap_path} (layout {layout}); {FIX}")
            split_path, gallery = _read_gallery(root, layout, cat, split, images, image_roots)
            queries = _read_queries(cap_path, layout, cat, labelled, set(gallery), split_path.name)
            parts.append(Part(cat, queries, list(gallery), remove_reference=False))
            files += [cap_path, split_path]
        facts = {"remove_reference": False, "gallery_sizes": {p.name: len(p.gallery or []) for p in parts}}
        return BenchmarkSplit(self.name, split, parts, images, options, files, labelled, layout=layout, facts=facts)

    def _read_mieb(self, root: Path, split: str, options: dict[str, Any]) -> BenchmarkSplit:
        """Val of all three categories as one query set over one pool of every category's and split's images, the
        reference kept (``mbeir.fashioniq_queries``)."""
        if split != "val":
            raise mbeir.refuse(
                "FashionIQ", f"scores val only (MIEB's and M-BEIR's test set is FashionIQ val), not {split}"
            )
        if list(options["categories"]) != list(M.FASHIONIQ_CATEGORIES):
            raise mbeir.refuse("FashionIQ", "merges the three categories into one query set: drop categories")
        layout = detect_layout(root, M.FASHIONIQ_CATEGORIES[0], split)
        images: dict[str, ImageRef] = {}
        image_roots: dict[str, DataRoot] = {}
        raw, files, vals = [], [], {}
        for cat in M.FASHIONIQ_CATEGORIES:
            for pool_split in ("train", "val", "test"):
                path, gallery = _read_gallery(root, layout, cat, pool_split, images, image_roots)
                files.append(path)
                vals[cat] = (path, gallery) if pool_split == "val" else vals.get(cat)
        for cat in M.FASHIONIQ_CATEGORIES:
            cap_path = root / LAYOUTS[layout][0] / f"cap.{cat}.val.json"
            raw += _read_queries(cap_path, layout, cat, True, set(vals[cat][1]), vals[cat][0].name)
            files.append(cap_path)
        queries, facts = mbeir.fashioniq_queries(raw)
        facts.update(protocol="mieb", gallery_size=len(images), remove_reference=False, pool="9 split files")
        warnings = [mbeir.IMAGES_WARNING]
        if len(images) != MIEB_POOL:
            warnings.append(
                f"protocol=mieb: the union of the nine image_splits files holds {len(images)} images; M-BEIR's pool "
                f"(every .jpg of its image folder) and MIEB's corpus hold {MIEB_POOL}"
            )
        part = Part("all", queries, list(images), remove_reference=False)
        return BenchmarkSplit(self.name, split, [part], images, options, files, True, layout, facts, [], warnings)

    def metrics(self, data: BenchmarkSplit, rankings: Rankings) -> dict[str, float]:
        if not data.has_labels:
            raise ScoringError(f"FashionIQ {data.split} has no public targets; report val")
        if mbeir.is_mieb(data.options):
            return mbeir.metrics(data, rankings, self.require_rankings)
        per_cat = {}
        for part in data.parts:
            self.require_rankings(part.queries, rankings)
            per_cat[part.name] = ([rankings.top[q.qid] for q in part.queries], [q.target for q in part.queries])
        return M.fashioniq_metrics(per_cat)

    def per_query(self, data: BenchmarkSplit, rankings: Rankings) -> QueryScores:
        """R@K hits per category (NaN outside it); the averages are the plain mean of the three categories."""
        if not data.has_labels:
            raise ScoringError(f"FashionIQ {data.split} has no public targets: no per-query metrics")
        if mbeir.is_mieb(data.options):
            return mbeir.per_query(data, rankings, self.require_rankings)
        scores = QueryScores([q.qid for q in data.queries], [p.name for p in data.parts for _ in p.queries])
        self.part_hits(scores, data, rankings, M.FASHIONIQ_KS)
        for k in M.FASHIONIQ_KS:
            scores.derive(f"avg_R@{k}", *(f"{c}_R@{k}" for c in M.FASHIONIQ_CATEGORIES))
        return scores

    def query_texts(self, query: Query, caption_join: str = "both-orders") -> list[str]:
        """Two captions joined as the method asks: SEARLE/LinCIR strip ``.?, `` and use both orders (averaged
        later); ``c1-and-c2`` one order; Pic2Word's ``c2-and-c1-raw`` unstripped."""
        if len(query.texts) != 2:
            return [query.texts[0]]
        c1, c2 = query.texts
        if caption_join == "both-orders":
            a, b = c1.strip(".?, "), c2.strip(".?, ")
            return [f"{a} and {b}", f"{b} and {a}"]
        if caption_join == "c1-and-c2":
            return [f"{c1.strip('.?, ')} and {c2.strip('.?, ')}"]
        if caption_join == "c2-and-c1-raw":
            return [f"{c2} and {c1}"]
        raise OptionError(f"unknown caption join {caption_join!r}; choose one of {', '.join(CAPTION_JOINS)}")

    def normalise_image_id(self, value: Any, qid: str = "") -> str:
        return image_stem(super().normalise_image_id(value, qid))

    def write_submission(
        self, rankings: Mapping[str, Any], data: BenchmarkSplit | None, out_dir: Path, stem: str, split: str
    ) -> tuple[list[Path], list[str]]:
        """The starter kit's ``{cat}.{split}.pred.json`` per category (indent=4, as its eval.py)."""
        if data is None:
            raise SubmissionError("FashionIQ prediction files copy the caption records: pass --root <FashionIQ root>")
        contents = {
            part.name: pred_records([q.extra["record"] for q in part.queries], rankings, part.name, part.gallery or [])
            for part in data.parts
        }
        paths = []
        for cat, content in contents.items():
            path = Path(out_dir) / self.name / stem / f"{cat}.{split}.pred.json"
            atomic_write_bytes(path, json.dumps(content, indent=4).encode("utf-8"))
            paths.append(path)
        return paths, ["FashionIQ has no live test server: these are the historic starter-kit files"]


def _read_gallery(
    root: Path, layout: str, cat: str, split: str, images: dict[str, ImageRef], image_roots: dict[str, DataRoot]
) -> tuple[Path, list[str]]:
    """``split.<cat>.<split>.json``: a list of unique ASINs; each new one is added to ``images`` (its file in the
    layout's image folder, which it may not leave)."""
    split_path = root / "image_splits" / f"split.{cat}.{split}.json"
    if not split_path.is_file():
        raise AnnotationError(f"FashionIQ file missing: {split_path} (layout {layout}); {FIX}")
    gallery = read_annotation_json(split_path, FIX)
    if not isinstance(gallery, list):
        raise AnnotationError(f"{split_path}: expected a JSON list of ASIN strings; {FIX}")
    for i, asin in enumerate(gallery):
        file_name(asin, "ASIN", FIX, split_path, i)
    if len(set(gallery)) != len(gallery):
        twice = sorted({a for a in gallery if gallery.count(a) > 1})[:3]
        raise AnnotationError(f"{split_path}: ASINs listed twice: {twice}; {FIX}")
    folder, _, leaf = LAYOUTS[layout][1].format(cat=cat, asin="{asin}").rpartition("/")
    where = image_roots.setdefault(folder, DataRoot(root / folder))  # images/ may be a symlink itself
    for i, asin in enumerate(gallery):
        if asin not in images:
            images[asin] = ImageRef(asin, inside(where, leaf.format(asin=asin), "ASIN", FIX, split_path, i, asin))
    return split_path, gallery


def _read_queries(
    cap_path: Path, layout: str, cat: str, labelled: bool, in_gallery: set[str], split_name: str
) -> list[Query]:
    """``cap.<cat>.<split>.json``: triplets with two captions whose images are all in the category's split file."""
    if not cap_path.is_file():
        raise AnnotationError(f"FashionIQ file missing: {cap_path} (layout {layout}); {FIX}")
    records = read_annotation_json(cap_path, FIX)
    if not isinstance(records, list):
        raise AnnotationError(f"{cap_path}: expected a JSON list of triplets; {FIX}")
    need = ["candidate", "captions"] + (["target"] if labelled else [])
    queries = []
    for i, r in enumerate(records):
        missing = missing_fields(r, need)
        if missing:
            raise bad_record(FIX, cap_path, i, f"missing {', '.join(repr(f) for f in missing)}")
        caps = items(r, "captions", "str", FIX, cap_path, i)
        if len(caps) != 2:  # every FashionIQ triplet has two; query_texts joins exactly two
            raise bad_record(FIX, cap_path, i, f"'captions' must hold two captions, got {len(caps)}")
        file_name(r["candidate"], "'candidate'", FIX, cap_path, i)
        target = file_name(r["target"], "'target'", FIX, cap_path, i) if labelled else None
        outside = [a for a in (r["candidate"], target) if a is not None and a not in in_gallery]
        if outside:
            raise bad_record(FIX, cap_path, i, f"images {outside} are not in {split_name}")
        gt = (target,) if labelled else None
        extra = {"category": cat, "record": r}
        queries.append(Query(f"{cat}/{i}", r["candidate"], tuple(caps), target, gt, extra=extra))
    return queries


def pred_records(
    records: Sequence[Mapping[str, Any]], rankings: Mapping[str, Any], category: str, gallery: Collection[str]
) -> list[dict[str, Any]]:
    """Each caption record plus ``"ranking": [50 ASINs]``; query ids are ``<category>/<record index>``."""
    top = rankings.get("top") or {}
    out, problems, lists = [], [], {}
    for i, record in enumerate(records):
        qid = f"{category}/{i}"
        if qid not in top:
            continue
        lists[qid] = list(top[qid][:TOP_K])
        out.append({**record, "ranking": lists[qid]})
    check_keys(problems, lists.keys(), [f"{category}/{i}" for i in range(len(records))], len(records))
    check_lists(problems, lists, TOP_K, gallery, f"{category} ranking")
    if problems:
        raise problems_error(f"FashionIQ {category} prediction file", problems)
    return out


BENCHMARKS.register(FashionIQ)
