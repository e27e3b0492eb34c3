"""LinCIR training throughput with each exact speedup on and off (``docs/PERFORMANCE.md``, section LinCIR training).

One measured step is the real training step: clean-caption targets (or cache reads), noise, phi, the masked
forward with pseudo tokens, MSE, backward into phi, AdamW. Batches are synthetic token rows whose lengths mimic the
upstream corpus mix (CC3M captions are short, Stable Diffusion prompts long), so timings do not need spaCy or data.

    python perf/lincir_train_speed.py                         # CPU: ViT-B-32 random init, batch 32
    python perf/lincir_train_speed.py --device cuda --backbone ViT-L-14:random --batch 512 \\
        --precision bf16 --configs upstream,all,all+compile --steps 20 --warmup 5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from dataclasses import dataclass

import numpy as np
import torch

from cirbench.backbones import eot_positions, load_backbone
from cirbench.lincir.objective import SpeedOptions, causal_attention, draw_randomness, encode, lincir_loss
from cirbench.lincir.phi import Phi


@dataclass(frozen=True)
class Config:
    name: str
    speed: SpeedOptions
    target_cache: bool = False
    compile: bool = False
    precision: str | None = None  # None: the --precision argument


PLAIN = SpeedOptions.plain()
CONFIGS = {
    "upstream": Config("upstream", PLAIN),  # 77 positions, additive mask, targets recomputed (upstream's work)
    "upstream-fp16": Config("upstream-fp16", PLAIN, precision="fp16"),  # upstream's --mixed_precision fp16 towers
    "+truncate": Config("+truncate", SpeedOptions(truncate=True, buckets=1, causal_sdpa=False)),
    "+buckets4": Config("+buckets4", SpeedOptions(truncate=True, buckets=4, causal_sdpa=False)),
    "+sdpa": Config("+sdpa", SpeedOptions(truncate=False, buckets=1, causal_sdpa=True)),
    "+target_cache": Config("+target_cache", PLAIN, target_cache=True),
    "all": Config("all", SpeedOptions(truncate=True, buckets=4, causal_sdpa=True), target_cache=True),
    "all-no-cache": Config("all-no-cache", SpeedOptions(truncate=True, buckets=4, causal_sdpa=True)),
    "all+compile": Config("all+compile", SpeedOptions(truncate=True, buckets=4, causal_sdpa=True), True, True),
}


def synthetic_batches(n: int, batch: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Token rows: 60% caption-like (8-24 BPE tokens), 40% prompt-like (30-75); masked rows put 259 on spans."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        orig = torch.zeros(batch, 77, dtype=torch.long)
        masked = torch.zeros(batch, 77, dtype=torch.long)
        for b in range(batch):
            length = int(rng.integers(8, 25) if rng.random() < 0.6 else rng.integers(30, 76))
            ids = rng.integers(300, 49000, size=length)
            orig[b, : length + 2] = torch.tensor([49406, *ids, 49407])
            keep = rng.random(length) > 0.35  # ~a third of the tokens belong to keyword spans
            row, previous = [], True
            for token, kept in zip(ids, keep, strict=True):
                if kept:
                    row.append(int(token))
                elif previous:
                    row.append(259)
                previous = kept
            if 259 not in row:
                row[0] = 259
            masked[b, : len(row) + 2] = torch.tensor([49406, *row, 49407])
        out.append((orig, masked))
    return out


def text_flops_per_token(width: int, layers: int) -> float:
    """Forward matmul FLOPs per token of the text tower (qkv + out + 4x MLP = 12 W^2 MACs per layer)."""
    return 2.0 * 12 * width * width * layers


def executed_tokens(tokens: torch.Tensor, speed: SpeedOptions) -> int:
    """Token positions the tower actually runs for this batch under ``speed``."""
    if not speed.truncate:
        return tokens.numel()
    ends = eot_positions(tokens) + 1
    if speed.buckets <= 1:
        return int(ends.max()) * tokens.shape[0]
    chunks = torch.tensor_split(torch.sort(ends).values, speed.buckets)
    return int(sum(int(c.max()) * len(c) for c in chunks if len(c)))


def run_config(args, cfg: Config, batches, device: torch.device) -> dict:
    precision = cfg.precision or args.precision
    backbone = load_backbone(args.backbone, device=device, precision=precision)
    model = backbone.model
    if cfg.compile:
        model.transformer = torch.compile(model.transformer, dynamic=True)
    width, layers = backbone.token_dim, len(model.transformer.resblocks)
    with torch.random.fork_rng(devices=[]):  # every config starts from the same phi: losses are comparable
        torch.manual_seed(0)
        phi = Phi.for_backbone(backbone.embed_dim, backbone.token_dim).to(device).train()
    optimizer = torch.optim.AdamW(phi.parameters(), lr=1e-4, weight_decay=0.01)
    generator = torch.Generator(device=device).manual_seed(0)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")  # as upstream's fp16 GradScaler
    targets = {}
    if cfg.target_cache:  # steady state (epoch >= 2): every target is a cache read
        with torch.no_grad(), causal_attention(model, cfg.speed.causal_sdpa):
            for i, (orig, _) in enumerate(batches):
                targets[i] = encode(model, orig.to(device), None, cfg.speed).cpu()  # tower dtype: lossless
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    flops, losses, elapsed, steps, times = 0.0, [], 0.0, 0, []
    with causal_attention(model, cfg.speed.causal_sdpa):
        for step in range(args.warmup + args.steps):
            i = step % len(batches)
            orig, masked = batches[i]
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            orig, masked = orig.to(device, non_blocking=True), masked.to(device, non_blocking=True)
            target = targets[i].to(device).float() if cfg.target_cache else None
            randomness = draw_randomness(len(orig), backbone.embed_dim, phi, generator, device)
            optimizer.zero_grad(set_to_none=True)
            speed = dataclasses.replace(cfg.speed, causal_sdpa=False)  # the hint is installed around the loop
            out = lincir_loss(model, phi, orig, masked, target=target, randomness=randomness, speed=speed)
            scaler.scale(out.loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step >= args.warmup:
                times.append(time.perf_counter() - start)
                elapsed += times[-1]
                steps += 1
                losses.append(out.loss.item())
                per_token = text_flops_per_token(width, layers)
                masked_tokens = executed_tokens(masked, cfg.speed)
                clean_tokens = 0 if cfg.target_cache else executed_tokens(orig, cfg.speed)
                flops += per_token * (clean_tokens + 2 * masked_tokens)  # masked: forward + input-gradient backward
    # Best step: robust to other processes on a shared machine; the mean is reported beside it.
    samples_per_s = args.batch / min(times)
    result = {
        "config": cfg.name,
        "precision": precision,
        "samples_per_s": round(samples_per_s, 2),
        "samples_per_s_mean": round(steps * args.batch / elapsed, 2),
        "step_s": [round(t, 4) for t in times],
        "mean_loss": round(float(np.mean(losses)), 5),
        "model_tflops_per_s": round(flops / elapsed / 1e12, 3),
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        if args.peak_tflops:
            result["mfu"] = round(flops / elapsed / (args.peak_tflops * 1e12), 4)
    result["projected_20k_x_512_h"] = round(20000 * 512 / samples_per_s / 3600, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="ViT-B-32:random")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--pool", type=int, default=4, help="Distinct synthetic batches cycled through.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--peak-tflops", type=float, default=None, help="Device peak (dense) for MFU.")
    parser.add_argument("--configs", default="upstream,+truncate,+buckets4,+sdpa,+target_cache,all")
    parser.add_argument("--json", default=None, help="Also write the results here.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batches = synthetic_batches(args.pool, args.batch)
    header = {
        "backbone": args.backbone,
        "batch": args.batch,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "mean_executed_tokens_per_row": round(float((eot_positions(batches[0][0]) + 1).float().mean()), 1),
    }
    print(json.dumps(header))
    results = []
    for name in args.configs.split(","):
        try:
            result = run_config(args, CONFIGS[name], batches, device)
        except Exception as error:  # noqa: BLE001 - one failing variant (e.g. compile) must not lose the others
            result = {"config": name, "error": f"{type(error).__name__}: {error}"[:300]}
        results.append(result)
        print(json.dumps(result), flush=True)
    base = next((r for r in results if r.get("config", "").startswith("upstream") and "samples_per_s" in r), None)
    if base:
        for r in results:
            if "samples_per_s" in r:
                speedup = r["samples_per_s"] / base["samples_per_s"]
                print(f"{r['config']:>14}: {r['samples_per_s']:>9.2f} samples/s  x{speedup:.2f} vs {base['config']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"header": header, "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
