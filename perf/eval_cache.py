"""Benchmark: `eval` of 3 methods vs 1 method on one backbone (the shared gallery cache should make 3 cost
about one gallery pass). Generates a CIRR-layout split of 640x480 JPEGs in a temporary folder.

Run: python perf/eval_cache.py --backbone ViT-B-32:random --images 400 --queries 200
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cirbench.evaluation import EvalSettings, RunRequest, evaluate, resolve
from cirbench.evaluation.evaluator import get_backbone


def make_split(root: Path, n_images: int, n_queries: int) -> None:
    rng = np.random.default_rng(0)
    names = [f"dev-{i}-0-img{i % 2}" for i in range(n_images)]
    (root / "cirr" / "captions").mkdir(parents=True)
    (root / "cirr" / "image_splits").mkdir(parents=True)
    (root / "dev").mkdir()
    for name in names:
        Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(root / "dev" / f"{name}.jpg")
    split = {name: f"./dev/{name}.jpg" for name in names}
    (root / "cirr" / "image_splits" / "split.rc2.val.json").write_text(json.dumps(split))
    queries = []
    for q in range(n_queries):
        members = [names[(q + j) % n_images] for j in range(6)]
        queries.append(
            {
                "pairid": q,
                "reference": members[0],
                "target_hard": members[1],
                "target_soft": {members[1]: 1.0},
                "caption": "make it brighter",
                "img_set": {"id": q, "members": members},
            }
        )
    (root / "cirr" / "captions" / "cap.rc2.val.json").write_text(json.dumps(queries))


def timed(methods: list[str], backbone: str, root: Path, results: Path) -> float:
    start = time.perf_counter()
    for method in methods:
        request = RunRequest(method=method, backbone=backbone, benchmark="cirr", split="val", root=root)
        evaluate(resolve(request), EvalSettings(results_dir=results, overwrite=True))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="ViT-B-32:random")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "CIRR"
        make_split(root, args.images, args.queries)
        spec = resolve(
            RunRequest(method="image-only", backbone=args.backbone, benchmark="cirr", split="val", root=root)
        )
        get_backbone(spec, "cpu", False)  # load once, outside the timings
        os.environ["CIRBENCH_CACHE"] = str(Path(folder) / "cache1")
        one = timed(["image+text"], args.backbone, root, Path(folder) / "r1")
        os.environ["CIRBENCH_CACHE"] = str(Path(folder) / "cache3")
        three = timed(["image+text", "image-only", "text-only"], args.backbone, root, Path(folder) / "r3")
    print(f"{args.backbone}, {args.images} gallery images, {args.queries} queries (backbone loaded before timing)")
    print(f"1 method: {one:.1f} s; 3 methods: {three:.1f} s ({three / one:.2f}x)")


if __name__ == "__main__":
    main()
