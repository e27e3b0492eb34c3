"""Check: JPEG decoding on the GPU (nvJPEG through ``torchvision.io.decode_jpeg``, batched) against cirbench's
CPU path (PIL decoding in DataLoader workers + the backbone's own preprocessing), for speed and for features.

Both paths encode the same 640x480 JPEGs with the same model. The GPU path decodes a batch on the device, resizes the
shortest side to the model's size (bicubic, antialiased), centre-crops and normalises there. Decoders and resizers
differ in rounding, so the features are compared within a tolerance: every image's cosine similarity to its CPU
feature must be at least ``--min-cosine`` (0.99 by default), and the decoded pixels' largest difference is reported.
Two image kinds are written: ``noise`` (uniform noise, the worst case for JPEG) and ``photo`` (smooth gradients with
edges, closer to photographs).

The evaluation path now decodes this way (``cirbench eval --decode device``, ``cirbench/decoding.py``);
``perf/gallery_encoding.py --decode workers,device`` measures it through cirbench and ``perf/gpu_check.sh`` runs
that. This script stays as a check written apart from cirbench's decoder.

Run on a GPU:  python perf/gpu_decode_check.py --backbone ViT-L-14:random --images 1024 --batch-size 256 --workers 8
CPU smoke run: python perf/gpu_decode_check.py --dry-run      (cirbench-tiny, 16 images, CPU decode_jpeg)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def write_jpegs(folder: Path, count: int, kind: str, quality: int = 90) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    y, x = np.mgrid[0:480, 0:640]
    for i in range(count):
        if kind == "noise":
            pixels = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        else:
            base = np.stack([(x * (i + 1)) % 256, (y * 3 + i * 17) % 256, ((x + y) // 2 + i * 29) % 256], axis=-1)
            box = (slice(100 + i % 50, 300), slice(150, 400 + i % 100))
            base[box] = 255 - base[box]
            pixels = base.astype(np.uint8)
        path = folder / f"{kind}_{i:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=quality)
        paths.append(path)
    return paths


def normaliser(preprocess) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the backbone's own transform (its torchvision ``Normalize``)."""
    for step in getattr(preprocess, "transforms", []):
        if type(step).__name__ == "Normalize":
            return torch.tensor(step.mean).view(1, 3, 1, 1), torch.tensor(step.std).view(1, 3, 1, 1)
    raise SystemExit("the backbone's preprocessing has no Normalize step; this check does not apply to it")


def gpu_batches(paths: list[Path], batch: int, device: str, size: int, mean: torch.Tensor, std: torch.Tensor):
    """Decode each batch on ``device`` and preprocess it there (resize shortest side, centre crop, normalise)."""
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
    from torchvision.transforms.v2 import functional as TF

    mean, std = mean.to(device), std.to(device)
    for start in range(0, len(paths), batch):
        data = [read_file(str(p)) for p in paths[start : start + batch]]
        images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        out = []
        for image in images:
            image = TF.resize(image, size, interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
            out.append(TF.center_crop(image, [size, size]))
        pixels = torch.stack(out).float().div_(255)
        yield (pixels - mean) / std, images


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="ViT-L-14:random")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--kinds", default="photo,noise")
    parser.add_argument("--min-cosine", type=float, default=0.99)
    parser.add_argument("--json", default=None, help="Also write the results here.")
    parser.add_argument("--dry-run", action="store_true", help="CPU smoke run: tiny backbone, 16 images, 0 workers.")
    args = parser.parse_args()
    if args.dry_run:
        args.backbone, args.device, args.images, args.batch_size, args.workers = "cirbench-tiny:random", "cpu", 16, 8, 0
    from cirbench.backbones import load_backbone
    from cirbench.benchmarks.base import ImageRef
    from cirbench.features import encode_images

    backbone = load_backbone(args.backbone, device=args.device)
    mean, std = normaliser(backbone.preprocess)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    results = []
    for kind in args.kinds.split(","):
        with tempfile.TemporaryDirectory() as folder:
            paths = write_jpegs(Path(folder), args.images, kind)
            refs = [ImageRef(p.stem, p) for p in paths]
            start = time.perf_counter()
            cpu = encode_images(
                backbone, refs, batch_size=args.batch_size, num_workers=args.workers, use_cache=False
            ).features
            cpu_s = time.perf_counter() - start
            for pixels, _ in gpu_batches(paths[: args.batch_size], args.batch_size, args.device, backbone.image_size,
                                         mean, std):  # fmt: skip
                backbone.encode_image(pixels)  # warm-up: nvJPEG handles, kernels
            sync()
            start = time.perf_counter()
            gpu, decoded = [], None
            for pixels, images in gpu_batches(paths, args.batch_size, args.device, backbone.image_size, mean, std):
                gpu.append(backbone.encode_image(pixels).cpu())
                decoded = decoded if decoded is not None else images[:4]
            sync()
            gpu_s = time.perf_counter() - start
            cosine = F.cosine_similarity(torch.from_numpy(np.asarray(cpu)), torch.cat(gpu), dim=-1)
            pil = [torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in paths[:4]]
            pixel_diff = max(int((a.cpu().int() - b.int()).abs().max()) for a, b in zip(decoded, pil, strict=True))
            record = {
                "kind": kind,
                "backbone": args.backbone,
                "device": args.device,
                "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                "images": args.images,
                "batch_size": args.batch_size,
                "cpu_workers": args.workers,
                "cpu_path_images_per_s": round(args.images / cpu_s, 1),
                "gpu_decode_images_per_s": round(args.images / gpu_s, 1),
                "cosine_min": round(float(cosine.min()), 6),
                "cosine_mean": round(float(cosine.mean()), 6),
                "max_pixel_diff_decoded": pixel_diff,
                "features_within_tolerance": bool(cosine.min() >= args.min_cosine),
                "min_cosine": args.min_cosine,
            }
            results.append(record)
            print(json.dumps(record), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if not all(r["features_within_tolerance"] for r in results):
        raise SystemExit(f"GPU-decoded features differ beyond cosine {args.min_cosine}: see cosine_min above")


if __name__ == "__main__":
    main()
