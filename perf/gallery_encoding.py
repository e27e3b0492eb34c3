"""Benchmark: gallery encoding images/s through cirbench (decode + preprocess + forward + cache write)
against the bare model forward on pre-decoded tensors.

Run: python perf/gallery_encoding.py --backbone cirbench-tiny:random --images 512
     python perf/gallery_encoding.py --backbone ViT-B-32:random --images 256
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cirbench.backbones import load_backbone
from cirbench.benchmarks.base import ImageRef
from cirbench.features import encode_images


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="cirbench-tiny:random")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    backbone = load_backbone(args.backbone, device=args.device)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        refs = []
        for i in range(args.images):
            path = Path(folder) / f"{i}.jpg"
            Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(path, quality=90)
            refs.append(ImageRef(str(i), path))
        start = time.perf_counter()
        encode_images(backbone, refs, batch_size=args.batch_size, num_workers=args.workers, use_cache=False)
        full = args.images / (time.perf_counter() - start)
    size = backbone.image_size
    pixels = torch.randn(args.batch_size, 3, size, size)
    backbone.encode_image(pixels)  # warm-up
    start = time.perf_counter()
    n = 0
    while n < args.images:
        backbone.encode_image(pixels)
        n += args.batch_size
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    bare = n / (time.perf_counter() - start)
    print(f"{args.backbone} on {args.device} ({torch.get_num_threads()} threads), {args.images} 640x480 JPEGs")
    print(
        f"cirbench encode_images: {full:.1f} images/s; bare forward on tensors: {bare:.1f} images/s "
        f"({full / bare:.0%} of bare)"
    )


if __name__ == "__main__":
    main()
