"""What the LinCIR training tests share: a small caption corpus, a tiny run's config, padded token rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from cirbench.lincir.config import TrainConfig

CAPTIONS = [
    "a dog runs across the green grass in the park",
    "the cat sits on a wooden table",
    "running fast",
    "portrait of a young woman, digital art, highly detailed, 8k",
    "two children play with a red ball on the beach",
    "an old man reads a newspaper at the station",
    "a small bird rests under the green tree",
    "cyberpunk city at night, neon lights, rain, highly detailed",
]


def write_corpus(folder: Path) -> Path:
    """24 captions (each of CAPTIONS three times, numbered): three steps per epoch at global batch 8."""
    path = folder / "captions.txt"
    path.write_text("\n".join(f"{c} {i}" for i in range(3) for c in CAPTIONS) + "\n")
    return path


def tiny_config(corpus: Path, out: Path | str, **overrides: Any) -> TrainConfig:
    """An 8-step run of cirbench-tiny on ``corpus``, one thread, logging every step."""
    base: dict[str, Any] = dict(
        backbone="cirbench-tiny:random",
        corpora=[str(corpus)],
        out=str(out),
        steps=8,
        global_batch=8,
        lr=1e-3,
        checkpoint_every=100,
        progress=False,
        threads=1,
        log_every=1,
    )
    return TrainConfig(**{**base, **overrides})


def pad(rows: list[list[int]]) -> torch.Tensor:
    """Token rows zero-padded to CLIP's 77 positions."""
    out = torch.zeros(len(rows), 77, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


def torchrun_cirbench(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node N -m cirbench ARGS`` from the checkout, one thread per process."""
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    cmd += ["-m", "cirbench", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=root)
