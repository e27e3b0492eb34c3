"""The training levers measured through the trainer itself (imported by ``lincir_train_speed.py``).

Each lever configuration builds a real ``Trainer`` on a synthetic mask cache (the speed script's token rows written
in the mask-cache format) and times ``Trainer.step``: the mask-cache gather, packing plans, target-cache reads,
noise, phi, the masked forward and backward, the scaler and AdamW, with the levers as the options set them. The
target cache is filled first (one pass over the corpus, eager: no compilation or capture spent on it), so every
measured step is in the steady state.

With ``host_sync=log`` the device is synchronised only around the measured block, so only the mean rate exists;
every configuration reports the mean over the block (``samples_per_s_mean``) and MFU from it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cirbench.errors import UserError
from cirbench.lincir.batches import batches
from cirbench.lincir.objective import causal_attention
from cirbench.text_encoding import eot_positions


@dataclass(frozen=True)
class LeverConfig:
    name: str
    options: dict[str, Any] = field(default_factory=dict)  # TrainConfig options on top of the default


ALL = {"fused_adamw": True, "varlen_attention": "auto", "host_sync": "log", "prefetch": True}
LEVERS = {
    c.name: c
    for c in (
        LeverConfig("default"),  # packing + SDPA hint + target cache: cirbench's default, through the trainer
        LeverConfig("default+compile", {"compile": True}),
        LeverConfig("+fused_adamw", {"fused_adamw": True}),
        LeverConfig("+varlen", {"varlen_attention": "flash"}),
        LeverConfig("+varlen-reference", {"varlen_attention": "reference"}),  # the CPU test kernel (slow)
        LeverConfig("+cuda_graphs", {"cuda_graphs": True}),
        LeverConfig("+no_sync", {"host_sync": "log"}),
        LeverConfig("+prefetch", {"prefetch": True}),
        LeverConfig("levers", {**ALL, "cuda_graphs": True}),  # every lever (varlen auto: flash where it runs)
        LeverConfig("levers+compile", {**ALL, "cuda_graphs": True, "compile": True}),  # graphs of inductor code
        LeverConfig("levers-no-graphs", ALL),  # every lever a CPU can run
        LeverConfig("levers-no-graphs+compile", {**ALL, "compile": True}),
    )
}


def write_mask_cache(folder: Path, batches_: list[tuple[torch.Tensor, torch.Tensor]]) -> Path:
    """The synthetic rows as a prepared mask cache (one masked variant per caption), as ``lincir prepare`` writes
    it: the trainer gathers them exactly as it gathers a real corpus's rows."""
    from cirbench.lincir.maskcache import FORMAT_VERSION, TOKENIZER_ID

    def rows(tokens: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        ends = (eot_positions(tokens) + 1).tolist()
        ids = np.concatenate([row[:end].numpy() for row, end in zip(tokens, ends, strict=True)])
        return ids.astype(np.uint16), np.concatenate([[0], np.cumsum(ends)]).astype(np.int64)

    orig = torch.cat([o for o, _ in batches_])
    masked = torch.cat([m for _, m in batches_])
    folder.mkdir(parents=True, exist_ok=True)
    arrays = dict(zip(("orig_ids", "orig_offsets"), rows(orig), strict=True))
    arrays.update(zip(("masked_ids", "masked_offsets"), rows(masked), strict=True))
    arrays["var_offsets"] = np.arange(len(orig) + 1, dtype=np.int64)
    arrays["masked_indicator"] = np.ones(len(orig), dtype=np.uint8)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    meta = {
        "key": f"synthetic-{len(orig)}",
        "format": FORMAT_VERSION,
        "tokenizer": TOKENIZER_ID,
        "mode": "upstream",
        "spacy": {"requested": "en_core_web_sm", "model": "en_core_web_sm", "package": "en_core_web_sm"},
        "corpus_hash": f"synthetic-{len(orig)}",
        "corpora": ["synthetic"],
        "captions": len(orig),
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def _share_backbones() -> None:
    """Every lever configuration uses one loaded backbone (it is frozen; only phi trains)."""
    import cirbench.backbones as backbones

    if getattr(backbones.load_backbone, "_shared", False):
        return
    original = backbones.load_backbone

    @functools.cache
    def shared(backbone_id: str, device: str, precision: str):
        return original(backbone_id, device=torch.device(device), precision=precision)

    def load(backbone_id, device=None, precision="fp32", allow_download=None):
        return shared(backbone_id, str(device), precision)

    load._shared = True  # type: ignore[attr-defined]
    backbones.load_backbone = load


def run_lever(args, cfg: LeverConfig, masks: Path, device: torch.device, flops_of) -> dict:
    """One lever configuration: a trainer, a pass filling the target cache, warm-up steps, then measured steps."""
    from cirbench.lincir.config import TrainConfig
    from cirbench.lincir.trainer import Trainer

    _share_backbones()
    out = Path(tempfile.mkdtemp(prefix=f"lever-{cfg.name.strip('+')}-"))
    options = {
        "backbone": args.backbone,
        "masks": str(masks),
        "out": str(out),
        "global_batch": args.batch,
        "steps": 10**9,
        "checkpoint_every": 10**9,
        "log_every": 10**9,
        "precision": args.precision,
        "device": str(device),
        "threads": args.threads,
        "progress": False,
        "seed": 0,
        **cfg.options,
    }
    try:
        trainer = Trainer(TrainConfig.from_dict(options))
    except UserError as error:  # a lever this device cannot run: reported, not crashed
        shutil.rmtree(out, ignore_errors=True)
        return {"config": cfg.name, "skipped": str(error)}
    try:
        return _measure(args, trainer, cfg.name, device, flops_of)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _measure(args, t, name: str, device: torch.device, flops_of) -> dict:
    speed, t.speed = t.speed, dataclasses.replace(t.speed, graphs=False, compile=False)  # untimed: no capture
    with torch.no_grad():  # steady state: every caption's target is cached before timing
        for step in range(t.plan.per_epoch):
            for micro in t.assemble(step):
                t._targets(micro)
    t.speed = speed
    first = t.plan.per_epoch
    measured = range(first + args.warmup, first + args.warmup + args.steps)
    flops = sum(flops_of(t.masks.batch(t.plan.indices(s), t.plan.variant_draws(s))[1]) for s in measured)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    lazy, times, losses = t.cfg.host_sync == "log", [], []
    with causal_attention(t.model, t.cfg.causal_sdpa), batches(t.assemble, t.cfg.prefetch, measured.stop) as source:
        for step in range(first, first + args.warmup):
            t.step(step, source)
        _sync(device)
        started = time.perf_counter()
        for step in measured:
            begin = time.perf_counter()
            losses.append(t.step(step, source))
            if not lazy:
                _sync(device)
                times.append(time.perf_counter() - begin)
        _sync(device)
        elapsed = time.perf_counter() - started
    result = {
        "config": name,
        "precision": t.precision,
        "levers": _ran(t),
        "samples_per_s": round(args.batch / min(times), 2) if times else None,
        "samples_per_s_mean": round(len(measured) * args.batch / elapsed, 2),
        "step_s": [round(x, 4) for x in times],
        "mean_loss": round(float(np.mean([x.item() for x in losses])), 5),
        "model_tflops_per_s": round(flops / elapsed / 1e12, 3),
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    if args.peak_tflops and device.type == "cuda":
        result["mfu"] = round(flops / elapsed / (args.peak_tflops * 1e12), 4)
    return result


def _ran(trainer) -> dict[str, Any]:
    from cirbench.lincir import levers

    return {"pack": trainer.speed.pack, **levers.record(trainer.cfg, trainer.speed)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
