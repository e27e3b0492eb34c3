"""The ``shapes`` benchmark: composed queries on the synthetic shapes world, no download needed.

Why it exists: it is the one CIR benchmark that runs anywhere in seconds, with exact ground truth. The
gallery renders every attribute combination ``renders`` times (held out: its random stream is disjoint from
pretraining and from the zero-shot accuracy check); each query changes one attribute of a gallery image, and
every gallery image with the resulting attributes is a ground truth. The same (reference, change) pairs are
worded twice, as CSS-like imperatives ("make it blue") and as descriptive predicates ("is blue"), in two parts
that share the gallery and are reported separately, so the effect of wording the captions never contain stays
visible.

Scoring is CIRCO-style: ``mAP@K`` over all ground truths and ``R@K`` = some ground truth within the top K
(the renderings of one combination are interchangeable, so no single one is "the" target). The reference is
removed from its own ranking. Images are rendered on first load into ``$CIRBENCH_CACHE/shapes/<hash>/``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from cirbench import metrics as M
from cirbench.benchmarks import BENCHMARKS
from cirbench.benchmarks.annotations import DataRoot, inside
from cirbench.benchmarks.base import Benchmark, BenchmarkSplit, ImageRef, Part, Query, Rankings
from cirbench.io import atomic_directory
from cirbench.options import Option, seed_option
from cirbench.query_scores import MEAN, RATE, QueryScores
from cirbench.shapes.captions import modification_text
from cirbench.shapes.world import (
    ATTRIBUTES,
    SALT_GALLERY,
    SALT_QUERIES,
    VALUES,
    Attributes,
    all_attributes,
    render,
    world_hash,
)

STYLES = ("imperative", "descriptive")
MAP_KS = M.CIRCO_KS
RECALL_KS = (1, 5, 10, 50)
SPLIT_IDS = {"test": 0, "val": 1}
_BASE_METRICS = tuple(f"mAP@{k}" for k in MAP_KS) + tuple(f"R@{k}" for k in RECALL_KS)


def cache_base() -> Path:
    return Path(os.environ.get("CIRBENCH_CACHE", Path.home() / ".cache" / "cirbench")) / "shapes"


def gallery_key(attrs: Attributes, render_index: int) -> str:
    return f"{attrs.key}-{render_index}"


def key_attributes(key: str) -> Attributes:
    """The attributes of a gallery key such as ``circle-red-large-top_left-1``."""
    return Attributes.from_key(key)


def _gallery(renders: int) -> list[tuple[str, Attributes, int]]:
    return [(gallery_key(a, r), a, i * renders + r) for i, a in enumerate(all_attributes()) for r in range(renders)]


def _queries(split_id: int, seed: int, renders: int, count: int) -> list[dict[str, Any]]:
    """``count`` (reference, one-attribute change) pairs, attributes balanced, each worded in both styles."""
    gallery = _gallery(renders)
    by_attrs: dict[Attributes, list[str]] = {}
    for key, attrs, _ in gallery:
        by_attrs.setdefault(attrs, []).append(key)
    rng = np.random.default_rng([SALT_QUERIES, split_id, seed])
    wording = {style: np.random.default_rng([SALT_QUERIES, split_id, seed, i]) for i, style in enumerate(STYLES)}
    out = []
    for i in range(count):
        ref_key, ref_attrs, _ = gallery[int(rng.integers(len(gallery)))]
        attribute = ATTRIBUTES[i % len(ATTRIBUTES)]
        choices = [v for v in VALUES[attribute] if v != getattr(ref_attrs, attribute)]
        value = choices[int(rng.integers(len(choices)))]
        target = ref_attrs.with_value(attribute, value)
        out.append(
            {
                "pair": i,
                "reference": ref_key,
                "attribute": attribute,
                "value": value,
                "reference_attributes": ref_attrs.key,
                "target_attributes": target.key,
                "gt": by_attrs[target],
                "texts": {s: modification_text(attribute, value, s, wording[s]) for s in STYLES},
            }
        )
    return out


def _render_folder(folder: Path, split_id: int, seed: int, renders: int, spec: dict[str, Any]) -> None:
    """Render the gallery into ``folder`` atomically: a temp folder (the files inside it plainly written) renamed
    into place when complete, so a half-rendered gallery is never seen."""
    if (folder / "spec.json").is_file():
        return
    with atomic_directory(folder) as tmp:
        for key, attrs, index in _gallery(renders):
            rng = np.random.default_rng([SALT_GALLERY, split_id, seed, index])
            render(attrs, rng).save(tmp / f"{key}.png")
        (tmp / "spec.json").write_text(json.dumps(spec, indent=1) + "\n")


class Shapes(Benchmark):
    """Synthetic CSS-like CIR: change one attribute, all renderings with the target attributes are correct."""

    name = "shapes"
    description = "synthetic shapes world (no download): mAP@K, R@K per wording style"
    splits = ("test", "val")
    options = (
        seed_option("seed of the queries and renderings"),
        # bounded work: 32 renders are 18,432 images (a CIRR-size gallery), rendered before anything else
        Option("renders", "int", 2, "renderings per attribute combination", minimum=1, maximum=32),
        Option("queries_per_style", "int", 400, "queries per wording style", minimum=1, maximum=20_000),
        Option("remove_reference", "bool", True, "drop the reference image from its ranking", varies=True),
    )
    main_metric = "mAP@10"
    leaderboard_columns = ("mAP@10", "R@1", "descriptive_R@1", "imperative_R@1")  # the headline few; --columns all
    leaderboard_notes = ('`descriptive_`: queries worded "is blue"; `imperative_`: "make it blue"; no prefix: both.',)
    toy = True
    images_generated = True  # rendered from spec.json (hashed in the run key): identified by that recipe at reuse
    metric_names = _BASE_METRICS + tuple(f"{s}_{m}" for s in STYLES for m in _BASE_METRICS)

    def read(self, root: Path | None, split: str, options: dict[str, Any]) -> BenchmarkSplit:
        """Render (first time only) and describe the split; ``root`` replaces ``$CIRBENCH_CACHE/shapes``."""
        seed, renders, count = options["seed"], options["renders"], options["queries_per_style"]
        remove_reference = options["remove_reference"]
        split_id = SPLIT_IDS[split]
        digest = world_hash(split=split, seed=seed, renders=renders, queries=count, protocol=self.protocol_version)
        folder = Path(root if root is not None else cache_base()) / digest
        pairs = _queries(split_id, seed, renders, count)
        generated = {"seed": seed, "renders": renders, "queries_per_style": count}
        spec = {
            "benchmark": self.name,
            "split": split,
            "world_hash": world_hash(),
            **generated,
            "pairs": pairs,
        }
        _render_folder(folder, split_id, seed, renders, spec)

        gallery = [key for key, _, _ in _gallery(renders)]
        where, fix = DataRoot(folder), f"cirbench renders this folder: remove {folder} to render it again"
        spec_path = folder / "spec.json"
        images = {key: ImageRef(key, inside(where, f"{key}.png", "image", fix, spec_path)) for key in gallery}
        parts = []
        for style in STYLES:
            queries = [
                Query(
                    qid=f"{style}/{p['pair']}",
                    reference=p["reference"],
                    texts=(p["texts"][style],),
                    gt=tuple(p["gt"]),
                    extra={
                        "style": style,
                        "attribute": p["attribute"],
                        "value": p["value"],
                        "reference_attributes": p["reference_attributes"],
                        "target_attributes": p["target_attributes"],
                    },
                )
                for p in pairs
            ]
            parts.append(Part(style, queries, gallery, remove_reference=remove_reference))
        facts = {
            "world_hash": world_hash(),
            "folder_hash": digest,
            "gallery_size": len(gallery),
            "recall": "some ground truth within the top K",
        }
        files = [folder / "spec.json"]
        return BenchmarkSplit(self.name, split, parts, images, options, files, True, layout="rendered", facts=facts)

    def _rows(self, data: BenchmarkSplit, rankings: Rankings):
        """Per part: (name, rankings without the reference, ground truths, each query's best-ranked ground truth)."""
        for part in data.parts:
            preds, gts, firsts = [], [], []
            self.require_rankings(part.queries, rankings)
            for q in part.queries:
                ranking = rankings.top[q.qid]
                ranking = M.drop_reference(ranking, q.reference) if part.remove_reference else list(ranking)
                gt = q.gt or ()
                preds.append(ranking)
                gts.append(gt)
                # R@K with interchangeable ground truths: score the best-ranked one.
                firsts.append(next((key for key in ranking if key in gt), None))
            yield part.name, preds, gts, firsts

    def metrics(self, data: BenchmarkSplit, rankings: Rankings) -> dict[str, float]:
        """Overall and per-style ``mAP@K`` (CIRCO) and ``R@K`` (any ground truth in the top K), in percent."""
        out: dict[str, float] = {}
        everything: tuple[list, list, list] = ([], [], [])
        for name, preds, gts, firsts in self._rows(data, rankings):
            scores = self._score(preds, gts, firsts)
            out.update({f"{name}_{metric}": value for metric, value in scores.items()})
            for bucket, values in zip(everything, (preds, gts, firsts), strict=True):
                bucket.extend(values)
        out.update(self._score(*everything))
        return out

    def per_query(self, data: BenchmarkSplit, rankings: Rankings) -> QueryScores:
        """AP@K (rule ``mean``) and R@K hits per query, overall (both styles pooled) and per style."""
        scores = QueryScores([q.qid for q in data.queries], [p.name for p in data.parts for _ in p.queries])
        pooled: dict[str, list[float]] = {}
        for name, preds, gts, firsts in self._rows(data, rankings):
            for metric, values, rule in self._query_values(preds, gts, firsts):
                scores.add_part(f"{name}_{metric}", name, values, rule)
                pooled.setdefault(metric, []).extend(values)
        for metric, _, rule in self._query_values([], [], []):
            scores.add(metric, pooled[metric], rule)
        return scores

    @staticmethod
    def _query_values(preds: list, gts: list, firsts: list):
        for k in MAP_KS:
            yield f"mAP@{k}", [M.circo_average_precision(p, g, k) for p, g in zip(preds, gts, strict=True)], MEAN
        for k in RECALL_KS:
            yield f"R@{k}", M.hits_at_k(preds, firsts, k), RATE

    @staticmethod
    def _score(preds: list, gts: list, firsts: list) -> dict[str, float]:
        circo = M.circo_metrics(preds, gts, firsts, ks=MAP_KS)
        scores = {f"mAP@{k}": circo[f"mAP@{k}"] for k in MAP_KS}
        scores.update({f"R@{k}": v for k, v in M.recall_at_k(preds, firsts, RECALL_KS).items()})
        return scores


BENCHMARKS.register(Shapes)
