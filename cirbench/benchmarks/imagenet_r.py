"""Pic2Word's ImageNet-R domain conversion (``--eval-mode imgnet``): a real photo + "a {domain} of *" -> renditions.

Protocol (MORE_BENCHMARKS_AND_METHODS.md §A; google-research/composed_image_retrieval@8c05329):

- Lists ``imgnet_real_query.txt`` (10,000 ImageNet val photos of the 200 ImageNet-R classes) and
  ``imgnet_targets.txt`` (16,983: 6,983 renditions of 4 domains + the same 10,000 photos), lines
  ``<path> <label> `` with paths relative to Pic2Word's ``data/`` (src/data.py#L312-L345).
- Labels are ``class_id + 1000 d`` (cartoon 0, origami 1, toy 2, sculpture 3, real photo 6); every line is checked
  against its folder (wnid) and file-name prefix (rendition), and wnid <-> class id must agree across both files.
- Each photo is a query once per domain p (4 x 10,000); relevant = gallery items labelled ``class_id + 1000 p``.
  The gallery is all 16,983 images for every domain; the query photo sits in it and is not removed (never relevant).
- Prompt ``"a {domain} of *"`` (``"a origami of *"`` verbatim, eval_retrieval.py#L257-L258), fixed by the benchmark
  for pseudo-word methods (``benchmarks.prompts``); the text-only sentence is the prompt with ``*`` deleted.
- Metric (get_metrics_imgnet, eval_utils.py#L603-L632): true recall ``|top-K ∩ G| / (|G| + 1e-5)`` and precision
  ``|top-K ∩ G| / K`` averaged over all queries, zero-positive ones included (they score 0), K in
  {1, 5, 10, 50, 100, 200}; papers report R@10 and R@50 per domain and their 4-domain average. K > 50 needs the
  full ranking: the engine gives every positive's position (``benchmarks.ranks``); a top-50 rankings file scores
  K <= 50 only.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cirbench import metrics_domain as MD
from cirbench.benchmarks import BENCHMARKS
from cirbench.benchmarks.annotations import DataRoot, inside, read_lines
from cirbench.benchmarks.base import Benchmark, BenchmarkSplit, ImageRef, Part, Query, Rankings
from cirbench.benchmarks.prompts import IMAGE_SLOT
from cirbench.benchmarks.ranks import known_depth, part_ranks
from cirbench.errors import AnnotationError, shown
from cirbench.options import Option
from cirbench.query_scores import QueryScores

FIX = "re-download it from https://github.com/google-research/composed_image_retrieval (data/imgnet/)"
QUERY_FILE, TARGET_FILE = "imgnet_real_query.txt", "imgnet_targets.txt"
DOMAINS = ("cartoon", "origami", "toy", "sculpture")  # prompt index p -> label offset 1000 p
REAL = 6
KS = (1, 5, 10, 50, 100, 200)
REPORTED_KS = (10, 50)
SIZES = {QUERY_FILE: 10_000, TARGET_FILE: 16_983}
_RENDITION = re.compile(r"^imgnet/imagenet-r/(n\d{8})/([a-z]+)_[^/]+$")
_REAL = re.compile(r"^imgnet/real/(n\d{8})/[^/]+$")


@dataclass(frozen=True)
class ListItem:
    """One checked line: its path (the image key), wnid, class id and domain (an index of DOMAINS, or REAL)."""

    path: str
    wnid: str
    class_id: int
    domain: int


def read_list(path: Path, queries: bool) -> list[ListItem]:
    """Parse one Pic2Word list; a line whose label disagrees with its folder or file name is an error."""
    out, seen = [], set()
    for number, line in read_lines(path, FIX):
        fields = line.strip().split(" ")
        if len(fields) != 2 or not fields[1].isascii() or not fields[1].lstrip("-").isdigit():
            raise AnnotationError(f"{path}: line {number}: expected '<path> <int label>', got {shown(line)}; {FIX}")
        key, label = fields[0], int(fields[1])
        class_id, domain = label % 1000, label // 1000
        real, rendition = _REAL.match(key), _RENDITION.match(key)
        if queries:
            ok = real is not None and domain == 0
        elif domain == REAL:
            ok = real is not None
        else:
            ok = rendition is not None and domain < len(DOMAINS) and rendition[2] == DOMAINS[domain]
        if not ok or label < 0:
            raise AnnotationError(
                f"{path}: line {number}: label {shown(label)} does not match {shown(key)} "
                "(labels are class_id + 1000 d: "
                f"{', '.join(f'{n} {i}' for i, n in enumerate(DOMAINS))}, real photo {REAL}; query lines carry the "
                f"bare class id); {FIX}"
            )
        if key in seen:
            raise AnnotationError(f"{path}: line {number}: {shown(key)} is listed twice; {FIX}")
        seen.add(key)
        wnid = (real or rendition)[1]
        out.append(ListItem(key, wnid, class_id, REAL if queries else domain))
    return out


def check_classes(lists: dict[Path, list[ListItem]]) -> None:
    """Every wnid has one class id and every class id one wnid, across both files."""
    by_wnid: dict[str, tuple[int, Path]] = {}
    by_class: dict[int, str] = {}
    for path, items in lists.items():
        for item in items:
            wnid_class, _ = by_wnid.setdefault(item.wnid, (item.class_id, path))
            class_wnid = by_class.setdefault(item.class_id, item.wnid)
            if wnid_class != item.class_id or class_wnid != item.wnid:
                raise AnnotationError(
                    f"{path}: {item.path}: class id {item.class_id} and wnid {item.wnid} disagree with another line "
                    f"(wnid {item.wnid} -> {wnid_class}, class {item.class_id} -> {class_wnid}); {FIX}"
                )


def find_lists(root: Path) -> tuple[Path, str]:
    """(folder holding both lists, layout): Pic2Word's ``data/`` root, its ``imgnet/`` folder, or the lists alone."""
    for folder, layout in ((root / "imgnet", "pic2word"), (root, "lists")):
        if all((folder / name).is_file() for name in (QUERY_FILE, TARGET_FILE)):
            return folder, layout
    missing = [str(root / "imgnet" / n) for n in (QUERY_FILE, TARGET_FILE) if not (root / "imgnet" / n).is_file()]
    raise AnnotationError(
        f"Pic2Word ImageNet-R lists not found: missing {', '.join(missing)} (or both files directly in {root}). "
        f"Get {QUERY_FILE} and {TARGET_FILE} from {FIX.split('from ', 1)[1]}; the images are ImageNet-R "
        "(imagenet-r.tar) under imgnet/imagenet-r/ and the ImageNet val photos sorted into imgnet/real/<wnid>/"
    )


class Pic2WordImageNetR(Benchmark):
    """Domain conversion on ImageNet-R: true recall per target domain, Pic2Word's protocol."""

    name = "pic2word-imagenet-r"
    title = "ImageNet-R domain conversion (Pic2Word)"
    description = "Pic2Word ImageNet-R: photo + 'a {domain} of *' -> rendition; true R@K per domain"
    splits = ("test",)
    options = (
        Option("domains", "choices", list(DOMAINS), "target domains to evaluate", DOMAINS),
        Option(
            "image_root",
            "path",
            None,
            "where the lists' imgnet/... paths resolve (default: the data root)",
            keyed=False,
        ),
    )
    main_metric = "avg_R@10"
    metric_names = (
        tuple(f"{d}_{m}@{k}" for d in DOMAINS for m in ("R", "P") for k in KS)
        + tuple(f"avg_R@{k}" for k in KS)
        + tuple(f"avg_P@{k}" for k in KS)
    )
    leaderboard_columns = tuple(f"{d}_R@{k}" for d in (*DOMAINS, "avg") for k in REPORTED_KS)
    leaderboard_order = 5
    leaderboard_notes = (
        "True recall |top-K ∩ G| / (|G| + 1e-5) over all 10,000 photos per domain (zero-positive ones score 0); "
        "a perfect ranking reaches only avg R@10 53.93, R@50 67.86.",
    )
    needs_positive_ranks = True

    def read(self, root: Path | None, split: str, options: dict[str, Any]) -> BenchmarkSplit:
        if root is None:
            raise AnnotationError("pic2word-imagenet-r needs --root: Pic2Word's data/ folder (holding imgnet/)")
        folder, layout = find_lists(root)
        data_root = DataRoot(Path(options["image_root"]) if options["image_root"] else folder.parent)
        files = [folder / QUERY_FILE, folder / TARGET_FILE]
        photos, targets = read_list(files[0], queries=True), read_list(files[1], queries=False)
        check_classes({files[0]: photos, files[1]: targets})
        stems = Counter(Path(p.path).stem for p in photos)
        if len(stems) != len(photos):
            twice = next(stem for stem, n in stems.items() if n > 1)
            raise AnnotationError(f"{files[0]}: two photos are named {twice} (query ids must be unique); {FIX}")
        gallery = [t.path for t in targets]
        images = {
            t.path: ImageRef(t.path, inside(data_root, t.path, "image", FIX, files[1], key=t.path)) for t in targets
        }
        for p in photos:
            images.setdefault(p.path, ImageRef(p.path, inside(data_root, p.path, "image", FIX, files[0], key=p.path)))
        by_label: dict[tuple[int, int], list[str]] = {}
        for t in targets:
            by_label.setdefault((t.class_id, t.domain), []).append(t.path)
        parts, with_positive = [], {}
        for domain in options["domains"]:
            index = DOMAINS.index(domain)
            queries = [
                Query(
                    qid=f"{domain}/{Path(p.path).stem}",
                    reference=p.path,
                    texts=(f"a {domain} of ",),
                    gt=tuple(by_label.get((p.class_id, index), ())),
                    extra={"domain": domain, "class_id": p.class_id},
                    prompt=f"a {domain} of {IMAGE_SLOT}",
                )
                for p in photos
            ]
            with_positive[domain] = sum(1 for q in queries if q.gt)
            parts.append(Part(domain, queries, gallery, remove_reference=False))
        warnings = [
            f"{name} has {n} lines; the official file has {SIZES[name]}"
            for name, n in ((QUERY_FILE, len(photos)), (TARGET_FILE, len(targets)))
            if n != SIZES[name]
        ]
        facts = {
            "gallery_size": len(gallery),
            "gallery_domains": dict(
                sorted(Counter(DOMAINS[t.domain] if t.domain < 4 else "real" for t in targets).items())
            ),
            "queries_per_domain": len(photos),
            "queries_with_a_positive": with_positive,
            "prompt": f"a {{domain}} of {IMAGE_SLOT} (pseudo-word methods); text-only: 'a {{domain}} of '",
            "metric": "true recall |top-K ∩ G| / (|G| + 1e-5), mean over all queries (zero-positive ones score 0)",
            "reference_in_gallery": "kept (a photo is never relevant)",
            "image_root": str(data_root),
        }
        return BenchmarkSplit(
            self.name, split, parts, images, options, files, True, layout=layout, facts=facts, warnings=warnings
        )

    def metrics(self, data: BenchmarkSplit, rankings: Rankings) -> dict[str, float]:
        out: dict[str, float] = {}
        for part in data.parts:
            self.require_rankings(part.queries, rankings)
            rows = part_ranks(part, rankings)
            pairs = [(r.ranks, r.n_positives) for r in rows]
            for k in (k for k in KS if k <= known_depth(rows)):
                out[f"{part.name}_R@{k}"] = MD.true_recall(pairs, k)
                out[f"{part.name}_P@{k}"] = MD.precision(pairs, k, "pic2word")
        if len(data.parts) == len(DOMAINS):
            for k in KS:
                for m in ("R", "P"):
                    values = [out.get(f"{d}_{m}@{k}") for d in DOMAINS]
                    if all(v is not None for v in values):
                        out[f"avg_{m}@{k}"] = sum(values) / len(values)
        return out

    def per_query(self, data: BenchmarkSplit, rankings: Rankings) -> QueryScores:
        """True recall and precision per query within its domain (empty elsewhere); ``avg_*`` = mean of domains."""
        scores = QueryScores([q.qid for q in data.queries], [p.name for p in data.parts for _ in p.queries])
        for part in data.parts:
            self.require_rankings(part.queries, rankings)
            rows = part_ranks(part, rankings)
            for k in (k for k in KS if k <= known_depth(rows)):
                hits = [(MD.hits_within(r.ranks, k), r.n_positives) for r in rows]
                scores.add_part(f"{part.name}_R@{k}", part.name, [h / (n + MD.EPS) for h, n in hits])
                scores.add_part(f"{part.name}_P@{k}", part.name, [h / k for h, _ in hits])
        if len(data.parts) == len(DOMAINS):
            for k in KS:
                for m in ("R", "P"):
                    scores.derive(f"avg_{m}@{k}", *(f"{d}_{m}@{k}" for d in DOMAINS))
        return scores


BENCHMARKS.register(Pic2WordImageNetR)
