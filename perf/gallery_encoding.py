"""Benchmark: gallery encoding images/s through cirbench (decode + preprocess + forward) per decoding path, against
the bare model forward on pre-decoded tensors of the same batch size.

Paths (``--decode``, comma-separated): ``workers`` (PIL in DataLoader workers, the CPU path) and ``device``
(``torchvision.io.decode_jpeg`` batched on ``--device``, preprocessing there: ``cirbench/decoding.py``). Both go
through ``cirbench.features.encode_images`` with the decoder the evaluation would use. When both run, every image's
device feature is compared with its workers feature (cosine, the issue's tolerance 0.99) and with every other image's
workers feature: random-init models map different images close together (noise JPEGs, ViT-L-14:random: cosine up to
0.994 between different images, measured on CPU), so the check also requires each device feature's nearest workers
feature to be its own image's (a file with the same bytes counts as its own). Each path encodes one batch first (not
timed: nvJPEG handles, kernels, worker start-up).

Run: python perf/gallery_encoding.py --backbone cirbench-tiny:random --images 256
     python perf/gallery_encoding.py --backbone ViT-B-32:random --images 128 --decode workers,device --threads 1
     python perf/gallery_encoding.py --backbone ViT-L-14:random --device cuda --batch-size 256 --images 1024 \\
         --workers 8 --decode workers,device --json out.json          (what perf/gpu_check.sh runs)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cirbench.backbones import load_backbone
from cirbench.benchmarks.base import ImageRef
from cirbench.decoding import device_decoder
from cirbench.features import encode_images
from cirbench.threads import HELP as THREADS_HELP
from cirbench.threads import use as use_threads


def write_jpegs(folder: Path, count: int, kind: str) -> list[ImageRef]:
    """640x480 JPEGs (quality 90): ``noise`` (the worst case for JPEG) or ``photo`` (smooth gradients, edges)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    refs = []
    for i in range(count):
        if kind == "noise":
            pixels = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        else:
            pixels = np.stack([(x * (i + 1)) % 256, (y * 3 + i * 17) % 256, ((x + y) // 2 + i * 29) % 256], -1)
            pixels[100:300, 150:400] = 255 - pixels[100:300, 150:400]
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)
        refs.append(ImageRef(str(i), path))
    return refs


def bare_forward(backbone, batch_size: int, images: int, cuda: bool) -> float:
    pixels = torch.randn(batch_size, 3, backbone.image_size, backbone.image_size)
    backbone.encode_image(pixels)  # warm-up
    start = time.perf_counter()
    n = 0
    while n < images:
        backbone.encode_image(pixels)
        n += batch_size
    if cuda:
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="cirbench-tiny:random")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--decode", default="workers", help="Comma-separated paths: workers, device.")
    parser.add_argument("--kind", default="noise", choices=("noise", "photo"))
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    parser.add_argument("--min-cosine", type=float, default=0.99)
    parser.add_argument("--json", default=None, help="Also write the figures here.")
    args = parser.parse_args()
    print(use_threads(args.threads).line())  # the one rule (cirbench/threads.py)
    modes = args.decode.split(",")
    if set(modes) - {"workers", "device"}:
        raise SystemExit(f"--decode {args.decode}: give workers, device or workers,device")
    backbone = load_backbone(args.backbone, device=args.device)
    cuda = args.device.startswith("cuda")
    rates: dict[str, float] = {}
    features: dict[str, np.ndarray] = {}
    counts: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as folder:
        refs = write_jpegs(Path(folder), args.images, args.kind)
        digests = [hashlib.sha256(ref.path.read_bytes()).hexdigest() for ref in refs]
        for mode in modes:
            decoder = device_decoder("device", backbone, "clip")[0] if mode == "device" else None
            common = dict(batch_size=args.batch_size, num_workers=args.workers, use_cache=False, decoder=decoder)
            encode_images(backbone, refs[: args.batch_size], **common)  # warm-up, not timed
            start = time.perf_counter()
            out = encode_images(backbone, refs, **common)
            rates[mode] = args.images / (time.perf_counter() - start)
            features[mode], counts[mode] = np.asarray(out.features), out.decoded
    bare = bare_forward(backbone, args.batch_size, args.images, cuda)
    name = torch.cuda.get_device_name() if cuda else f"cpu, {torch.get_num_threads()} threads"
    print(
        f"{args.backbone} on {args.device} ({name}), {args.images} 640x480 {args.kind} JPEGs, batch {args.batch_size}"
    )
    record: dict = {"backbone": args.backbone, "device": name, "images": args.images, "kind": args.kind}
    record.update(batch_size=args.batch_size, workers=args.workers, bare_forward_images_per_s=round(bare, 1))
    for mode, rate in rates.items():
        print(
            f"cirbench encode_images, --decode {mode}: {rate:.1f} images/s ({rate / bare:.0%} of the bare forward; "
            f"decoded {counts[mode]})"
        )
        record[f"{mode}_images_per_s"] = round(rate, 1)
        record[f"{mode}_share_of_bare"] = round(rate / bare, 4)
    print(f"bare forward on tensors: {bare:.1f} images/s")
    failed = False
    if len(features) == 2:
        own, other = own_and_other_cosines(features["workers"], features["device"], digests)
        record["cosine_min"] = round(float(own.min()), 6)
        record["other_image_cosine_max"] = round(float(other.max()), 6)
        record["nearest_is_own"] = int((own > other).sum())
        failed = bool(own.min() < args.min_cosine) or record["nearest_is_own"] != len(own)
        print(
            f"device vs workers features: cosine min {own.min():.6f}, mean {own.mean():.6f}; to other images at most "
            f"{other.max():.6f}; nearest workers feature is the image's own for {record['nearest_is_own']}/{len(own)}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    if failed:
        raise SystemExit(
            f"device-decoded features differ beyond cosine {args.min_cosine}, or one is nearer another image's"
        )


def own_and_other_cosines(
    workers: np.ndarray, device: np.ndarray, digests: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: the cosine of its device feature to its workers feature, and the largest to the workers feature of
    any image with other bytes (the photo-like gallery repeats an image every 256)."""
    a = F.normalize(torch.from_numpy(np.asarray(workers, np.float32)), dim=-1)
    b = F.normalize(torch.from_numpy(np.asarray(device, np.float32)), dim=-1)
    sim = b @ a.T
    ids = torch.from_numpy(np.unique(digests, return_inverse=True)[1].reshape(-1))
    same = ids[:, None] == ids[None, :]
    return sim.diagonal(), sim.masked_fill(same, -2.0).max(dim=1).values


if __name__ == "__main__":
    main()
