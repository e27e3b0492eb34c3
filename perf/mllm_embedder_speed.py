"""Benchmark: queries/s of the MLLM embedder path (``mllm-embedder``: prompt, processor, forward, last-token pooling)
on the tiny random Qwen2-VL of ``tests/tiny_hf.py`` (or any model folder), plus gallery images/s.

The tiny model measures the harness's own overhead (templating, the processor's resize and patching, padding,
pooling), not a real model's compute: a 2B model's forward dominates by orders of magnitude on any device.
One warm-up batch is not timed.

Run: python perf/mllm_embedder_speed.py --threads 1 --queries 64
     python perf/mllm_embedder_speed.py --model /path/to/gme-folder --preset gme --device cuda --queries 256
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cirbench.threads import HELP as THREADS_HELP
from cirbench.threads import use as use_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: a tiny random Qwen2-VL built here)")
    parser.add_argument("--preset", default="vlm2vec-v2")
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    choice = use_threads(args.threads)  # the one rule (cirbench/threads.py)
    args.threads = choice.threads
    print(choice.line())

    from cirbench.methods import get_method_entry

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from tiny_hf import tiny_qwen2vl_folder

            model = str(tiny_qwen2vl_folder(Path(tmp) / "tiny-qwen2vl"))
        entry = get_method_entry("mllm-embedder")
        options = entry.parse_options({"model": model, "preset": args.preset, "batch_size": args.batch_size})
        encoder = entry.encoder.load(options, args.device, False)
        method = entry.factory(encoder, None, options)
        rng = np.random.default_rng(0)
        images = [Image.fromarray((rng.random((256, 320, 3)) * 255).astype("uint8")) for _ in range(args.queries)]
        colours, things = ("red", "blue", "green"), ("dog", "car")
        texts = [[f"make it {colours[i % 3]} and add a {things[i % 2]}"] for i in range(args.queries)]
        method.encode_queries([None] * args.batch_size, texts[: args.batch_size], images)  # warm-up
        start = time.perf_counter()
        method.encode_queries([None] * args.queries, texts, images)
        query_s = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(0, args.queries, args.batch_size):
            encoder.encode_image(encoder.collate([encoder.preprocess(im) for im in images[i : i + args.batch_size]]))
        image_s = time.perf_counter() - start
    print(
        f"mllm-embedder ({args.preset}, {Path(model).name if args.model else 'tiny random Qwen2-VL'}, "
        f"{args.device}, {args.threads} thread(s), batch {args.batch_size}): "
        f"{args.queries / query_s:.1f} queries/s, {args.queries / image_s:.1f} gallery images/s"
    )


if __name__ == "__main__":
    main()
