"""FreeDom's domain-conversion suite (WACV 2025, NikosEfth/freedom@5df4bca): ImageNet-R, MiniDomainNet, NICO++, LTLL.

One loader family serves all four (MORE_BENCHMARKS_AND_METHODS.md §C): each dataset is a query list and a database
list of ``<path> <domain> <class>`` lines (utils_features.py#L10-L29), paths relative to FreeDom's ``data/``.

- Queries: for every ordered pair (source s, target t), s != t, every query image of domain s with the bare
  target-domain word as its text (``"cartoon"``, ``"photo"``, ``"dimlight"``, ``"Archive"``; no template,
  run_retrieval.py#L68-L111). Folder names become words as utils_retrieval.py#L8-L76 renames them.
- Gallery: the whole database, every domain. ImageNet-R and LTLL use one list as both (the query is in the gallery,
  never relevant since its domain is s). Relevant: same class string and domain t (utils_retrieval.py#L169-L204).
- Metric: mAP with Radenović's trapezoidal AP over the full ranking (utils.py#L134-L161), queries without a
  positive count 0; R@K (true recall) and P@K (``/ (min(|G|, K) + 1e-5)``) at the dataset's two Ks. Published:
  per source domain the mean over its targets, and AVG over all pairs (utils.py#L17-L29). cirbench keeps the
  values unrounded (FreeDom rounds each pair to 2 decimals before averaging: at most 0.005 apart).
- ImageNet-R: FreeDom generates ``full_files.csv`` from Pic2Word's ``imgnet_targets.txt`` (set_dataset.py#L61-L92).
  Without it cirbench derives the same lines from that list (paths ``imgnet/`` -> ``imagenet_r/``, domain from the
  label, class from ``label_names.csv`` when present, else the wnid, which differs only if two classes share a name).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from cirbench import metrics_domain as MD
from cirbench.benchmarks import BENCHMARKS
from cirbench.benchmarks.annotations import DataRoot, inside
from cirbench.benchmarks.annotations import read_lines as list_lines
from cirbench.benchmarks.base import Benchmark, BenchmarkSplit, ImageRef, Part, Query, Rankings
from cirbench.benchmarks.imagenet_r import DOMAINS as PIC2WORD_DOMAINS
from cirbench.benchmarks.imagenet_r import REAL, TARGET_FILE, read_list
from cirbench.benchmarks.ranks import part_ranks
from cirbench.errors import AnnotationError, ScoringError, shown
from cirbench.query_scores import QueryScores

FIX = "get it from https://github.com/NikosEfth/freedom (data/<dataset>/) and run its set_dataset.py"
Line = tuple[str, str, str]  # (path, domain folder name, class)


def read_lines(path: Path, domains: Mapping[str, str]) -> list[Line]:
    """``<path> <domain> <class>`` per line; an unknown domain or a repeated path is an error naming the line."""
    out, seen = [], set()
    for number, line in list_lines(path, FIX):
        fields = line.strip().split(" ")
        if len(fields) != 3 or not all(fields):
            raise AnnotationError(
                f"{path}: line {number}: expected '<path> <domain> <class>', got {shown(line)}; {FIX}"
            )
        if fields[1] not in domains:
            raise AnnotationError(
                f"{path}: line {number}: domain {shown(fields[1])} is not one of {', '.join(domains)}; {FIX}"
            )
        if fields[0] in seen:
            raise AnnotationError(f"{path}: line {number}: {shown(fields[0])} is listed twice; {FIX}")
        seen.add(fields[0])
        out.append((fields[0], fields[1], fields[2]))
    return out


class FreeDomSuite(Benchmark):
    """One FreeDom dataset; subclasses set the folder, the files, the domain words and the two Ks."""

    dataset: ClassVar[str]
    domains: ClassVar[Mapping[str, str]]  # folder name -> text (FreeDom's order)
    ks: ClassVar[tuple[int, int]]
    query_file: ClassVar[str] = "query_files.csv"
    database_file: ClassVar[str] = "database_files.csv"
    sizes: ClassVar[Mapping[str, int]] = {}
    splits = ("test",)
    main_metric = "avg_mAP"
    needs_positive_ranks = True
    leaderboard_notes = ("mAP: Radenović's AP over the full ranking; per source domain, averaged over its targets.",)
    published_split = "test"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        words = tuple(cls.domains.values())
        pairs = [f"{s}_to_{t}" for s in words for t in words if s != t]
        per_pair = [f"{p}_{m}" for p in pairs for m in ("mAP", *(f"{x}@{k}" for x in "RP" for k in cls.ks))]
        cls.metric_names = (
            *per_pair,
            *(f"{w}_mAP" for w in words),
            "avg_mAP",
            *(f"avg_{x}@{k}" for x in "RP" for k in cls.ks),
        )
        cls.leaderboard_columns = (*(f"{w}_mAP" for w in sorted(words, key=cls.column_order)), "avg_mAP")

    @staticmethod
    def column_order(word: str) -> Any:
        return word.lower()

    def locate(self, root: Path) -> tuple[Path, Path]:
        """(the dataset folder holding the lists, FreeDom's data root the paths start from)."""
        for folder in (root / self.dataset, root):
            if (folder / self.query_file).is_file():
                return folder, folder.parent
        raise AnnotationError(
            f"FreeDom {self.dataset} list not found: expected {root / self.dataset / self.query_file} (root = "
            f"FreeDom's data/) or {root / self.query_file} (root = data/{self.dataset}); {FIX}"
        )

    def lists(self, root: Path) -> tuple[list[Line], list[Line], list[Path], Path, str]:
        """(query lines, database lines, their files, the data root, the layout)."""
        folder, data_root = self.locate(root)
        files = [folder / self.query_file]
        queries = read_lines(files[0], self.domains)
        if self.database_file == self.query_file:
            return queries, queries, files, data_root, "freedom"
        database_path = folder / self.database_file
        if not database_path.is_file():
            raise AnnotationError(f"FreeDom {self.dataset} database list missing: {database_path}; {FIX}")
        files.append(database_path)
        return queries, read_lines(database_path, self.domains), files, data_root, "freedom"

    def read(self, root: Path | None, split: str, options: dict[str, Any]) -> BenchmarkSplit:
        if root is None:
            raise AnnotationError(f"{self.name} needs --root: FreeDom's data/ folder (holding {self.dataset}/)")
        queries, database, files, data_root, layout = self.lists(root)
        where = DataRoot(data_root)
        images = {p: ImageRef(p, inside(where, p, "image", FIX, files[-1], key=p)) for p, _, _ in database}
        for p, _, _ in queries:
            images.setdefault(p, ImageRef(p, inside(where, p, "image", FIX, files[0], key=p)))
        gallery = [p for p, _, _ in database]
        relevant: dict[tuple[str, str], list[str]] = {}
        for p, domain, cls in database:
            relevant.setdefault((cls, domain), []).append(p)
        parts, oracle = [], {}
        for source, s_word in self.domains.items():
            mine = [(i, p, cls) for i, (p, d, cls) in enumerate(queries) if d == source]
            for target, t_word in self.domains.items():
                if target == source:
                    continue
                part_queries = [
                    Query(
                        f"{s_word}_to_{t_word}/{i}",
                        p,
                        (t_word,),
                        gt=tuple(relevant.get((cls, target), ())),
                        extra={"source": s_word, "target": t_word, "class": cls},
                    )
                    for i, p, cls in mine
                ]
                name = f"{s_word}_to_{t_word}"
                oracle[name] = (
                    100.0
                    * sum(1 / (1 + MD.EPS / len(q.gt)) if q.gt else 0.0 for q in part_queries)
                    / max(len(part_queries), 1)
                )
                parts.append(Part(name, part_queries, gallery, remove_reference=False))
        warnings = [
            f"{path.name} has {n} lines; FreeDom's has {self.sizes[path.name]}"
            for path, n in zip(files, (len(queries), len(database)), strict=False)
            if path.name in self.sizes and n != self.sizes[path.name]
        ]
        facts = {
            "gallery_size": len(gallery),
            "query_images_per_domain": dict(Counter(self.domains[d] for _, d, _ in queries)),
            "texts": "the bare target-domain word: " + ", ".join(self.domains.values()),
            "metric": "mAP = mean Radenović AP over the full ranking (zero-positive queries score 0), unrounded",
            "oracle_mAP_per_pair": {k: round(v, 2) for k, v in oracle.items()},
        }
        return BenchmarkSplit(
            self.name, split, parts, images, options, files, True, layout=layout, facts=facts, warnings=warnings
        )

    def metrics(self, data: BenchmarkSplit, rankings: Rankings) -> dict[str, float]:
        out: dict[str, float] = {}
        for part in data.parts:
            self.require_rankings(part.queries, rankings)
            rows = part_ranks(part, rankings)
            if any(row.depth != math.inf for row in rows):
                raise ScoringError(
                    f"{self.name} mAP runs over the full ranking: each query's list must hold all its positives "
                    f"or the whole gallery ({part.name}); top-K files cannot be scored"
                )
            pairs = [(row.ranks, row.n_positives) for row in rows]
            out[f"{part.name}_mAP"] = MD.mean_radenovic_ap(pairs)
            for k in self.ks:
                out[f"{part.name}_R@{k}"] = MD.true_recall(pairs, k)
                out[f"{part.name}_P@{k}"] = MD.precision(pairs, k, "freedom")
        names = [p.name for p in data.parts]
        for word in self.domains.values():
            mine = [out[f"{n}_mAP"] for n in names if n.startswith(f"{word}_to_")]
            if len(mine) == len(self.domains) - 1:
                out[f"{word}_mAP"] = sum(mine) / len(mine)
        if len(names) == len(self.domains) * (len(self.domains) - 1):
            for metric in ("mAP", *(f"{x}@{k}" for x in "RP" for k in self.ks)):
                out[f"avg_{metric}"] = sum(out[f"{n}_{metric}"] for n in names) / len(names)
        return out

    def per_query(self, data: BenchmarkSplit, rankings: Rankings) -> QueryScores:
        """Radenović AP, true recall and precision per query within its (source, target) pair; the per-source mAP
        and the ``avg_*`` metrics are plain means of the pairs, as ``metrics`` computes them."""
        scores = QueryScores([q.qid for q in data.queries], [p.name for p in data.parts for _ in p.queries])
        for part in data.parts:
            self.require_rankings(part.queries, rankings)
            rows = part_ranks(part, rankings)
            if any(row.depth != math.inf for row in rows):
                raise ScoringError(f"{self.name} {part.name}: the full-ranking positions are not stored for this run")
            scores.add_part(f"{part.name}_mAP", part.name, [MD.radenovic_ap(r.ranks, r.n_positives) for r in rows])
            for k in self.ks:
                hits = [(MD.hits_within(r.ranks, k), r.n_positives) for r in rows]
                scores.add_part(f"{part.name}_R@{k}", part.name, [h / (n + MD.EPS) for h, n in hits])
                scores.add_part(f"{part.name}_P@{k}", part.name, [h / (min(n, k) + MD.EPS) for h, n in hits])
        names = [p.name for p in data.parts]
        for word in self.domains.values():
            mine = [f"{n}_mAP" for n in names if n.startswith(f"{word}_to_")]
            if len(mine) == len(self.domains) - 1:
                scores.derive(f"{word}_mAP", *mine)
        if len(names) == len(self.domains) * (len(self.domains) - 1):
            for metric in ("mAP", *(f"{x}@{k}" for x in "RP" for k in self.ks)):
                scores.derive(f"avg_{metric}", *(f"{n}_{metric}" for n in names))
        return scores


class FreeDomImageNetR(FreeDomSuite):
    name = "freedom-imagenet-r"
    title = "ImageNet-R (FreeDom)"
    description = "FreeDom ImageNet-R: 5 domains incl. photo, 20 pairs, all 16,983 images as queries; mAP"
    dataset = "imagenet_r"
    domains = {"real": "photo", "cartoon": "cartoon", "origami": "origami", "toy": "toy", "sculpture": "sculpture"}
    ks = (10, 50)
    query_file = database_file = "full_files.csv"
    sizes = {"full_files.csv": 16_983}
    leaderboard_order = 7

    def lists(self, root: Path) -> tuple[list[Line], list[Line], list[Path], Path, str]:
        """FreeDom's ``full_files.csv`` when present, else the same lines derived from Pic2Word's targets list."""
        for folder in (root / self.dataset, root):
            if (folder / self.query_file).is_file():
                return super().lists(root)
            if (folder / TARGET_FILE).is_file():
                names = self._label_names(folder / "label_names.csv")
                words = {i: name for i, name in enumerate(PIC2WORD_DOMAINS)} | {REAL: "real"}
                items = read_list(folder / TARGET_FILE, queries=False)
                lines = [
                    ("imagenet_r" + t.path[len("imgnet") :], words[t.domain], names.get(t.wnid, t.wnid)) for t in items
                ]
                files = [folder / TARGET_FILE] + ([folder / "label_names.csv"] if names else [])
                return lines, lines, files, folder.parent, "pic2word-list"
        raise AnnotationError(
            f"FreeDom ImageNet-R lists not found: expected {root / self.dataset / self.query_file} (FreeDom, made by "
            f"its set_dataset.py) or Pic2Word's {TARGET_FILE} in {root / self.dataset} or {root}; {FIX}"
        )

    @staticmethod
    def _label_names(path: Path) -> dict[str, str]:
        """FreeDom's ``label_names.csv`` (``wnid,name`` rows); class names with spaces cannot be list fields."""
        if not path.is_file():
            return {}
        out = {}
        for number, line in list_lines(path, FIX):
            wnid, _, name = line.partition(",")
            if not name.strip() or " " in name.strip() or not wnid.strip():
                raise AnnotationError(
                    f"{path}: line {number}: expected 'wnid,name' with no space in the name, got {shown(line)}"
                )
            if wnid.strip() in out:
                raise AnnotationError(f"{path}: line {number}: {shown(wnid.strip())} is named twice; {FIX}")
            out[wnid.strip()] = name.strip()
        return out


class FreeDomMiniDN(FreeDomSuite):
    name = "freedom-minidn"
    title = "MiniDomainNet (FreeDom)"
    description = "FreeDom MiniDomainNet: clipart, painting, photo, sketch; 12 pairs; mAP"
    dataset = "minidn"
    domains = {"clipart": "clipart", "painting": "painting", "real": "photo", "sketch": "sketch"}
    ks = (50, 100)
    sizes = {"query_files.csv": 2_520}
    leaderboard_order = 8


class FreeDomNICO(FreeDomSuite):
    name = "freedom-nico"
    title = "NICO++ (FreeDom)"
    description = "FreeDom NICO++: autumn, dimlight, grass, outdoor, rock, water; 30 pairs; mAP"
    dataset = "nico"
    domains = {
        "autumn": "autumn",
        "dim": "dimlight",
        "grass": "grass",
        "outdoor": "outdoor",
        "rock": "rock",
        "water": "water",
    }
    ks = (50, 100)
    sizes = {"query_files.csv": 8_723, "database_files.csv": 80_134}
    leaderboard_order = 9


class FreeDomLTLL(FreeDomSuite):
    name = "freedom-ltll"
    title = "LTLL (FreeDom)"
    description = "FreeDom LTLL: Today <-> Archive photos of 25 locations; mAP"
    dataset = "ltll"
    domains = {"New": "Today", "Old": "Archive"}
    ks = (5, 10)
    query_file = database_file = "full_files.csv"
    sizes = {"full_files.csv": 488}
    leaderboard_order = 10

    @staticmethod
    def column_order(word: str) -> Any:
        return ("Today", "Archive").index(word)  # the README's order, not alphabetical


for _suite in (FreeDomImageNetR, FreeDomMiniDN, FreeDomNICO, FreeDomLTLL):
    BENCHMARKS.register(_suite)
