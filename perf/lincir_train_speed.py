"""LinCIR training throughput with each exact speedup on and off (``docs/PERFORMANCE.md``, section LinCIR training).

One measured step is the real training step: clean-caption targets (or cache reads), noise, phi, the masked
forward with pseudo tokens, MSE, backward into phi, AdamW. Batches are synthetic token rows whose lengths mimic the
upstream corpus mix (CC3M captions are short, Stable Diffusion prompts long), so timings do not need spaCy or data.

    python perf/lincir_train_speed.py                         # CPU: ViT-B-32 random init, batch 32
    python perf/lincir_train_speed.py --device cuda --backbone ViT-L-14:random --batch 512 \\
        --precision bf16 --configs upstream,all,all+compile --steps 20 --warmup 5

The training levers (``cirbench/lincir/levers.py``) are measured through the trainer itself (``lincir_levers.py``):
``default`` (packing + SDPA hint + target cache), each lever alone on top of it (``+fused_adamw``, ``+varlen``,
``+cuda_graphs``, ``+no_sync``, ``+prefetch``) and all together (``levers``, ``levers+compile``; without CUDA graphs:
``levers-no-graphs``). A lever the device cannot run is reported as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lincir_levers import LEVERS, run_lever, write_mask_cache

from cirbench.backbones import load_backbone
from cirbench.lincir.objective import SpeedOptions, causal_attention, draw_randomness, encode, lincir_loss
from cirbench.phi import Phi
from cirbench.text_encoding import eot_positions
from cirbench.threads import HELP as THREADS_HELP
from cirbench.threads import use as use_threads


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
    # "hf-upstream": upstream's own model class (transformers CLIPTextModelWithProjection), see run_hf_upstream
    "+truncate": Config("+truncate", SpeedOptions(truncate=True, buckets=1, causal_sdpa=False)),
    "+buckets4": Config("+buckets4", SpeedOptions(truncate=True, buckets=4, causal_sdpa=False)),
    "+sdpa": Config("+sdpa", SpeedOptions(truncate=False, buckets=1, causal_sdpa=True)),
    "+target_cache": Config("+target_cache", PLAIN, target_cache=True),
    "all": Config("all", SpeedOptions(truncate=True, buckets=4, causal_sdpa=True), target_cache=True),
    "all-no-cache": Config("all-no-cache", SpeedOptions(truncate=True, buckets=4, causal_sdpa=True)),
    "all+compile": Config("all+compile", SpeedOptions(truncate=True, buckets=4, causal_sdpa=True), True, True),
    "+pack": Config("+pack", SpeedOptions(truncate=False, buckets=1, causal_sdpa=False, pack=True)),
    "all-pack": Config("all-pack", SpeedOptions(pack=True), target_cache=True),
    "all-pack-no-cache": Config("all-pack-no-cache", SpeedOptions(pack=True)),
    "all-pack-no-cache+compile": Config(
        "all-pack-no-cache+compile", SpeedOptions(pack=True, compile=True), target_cache=False, compile=True
    ),
    "all-pack+compile": Config("all-pack+compile", SpeedOptions(pack=True, compile=True), True, True),
    "all-bf16": Config("all-bf16", SpeedOptions(truncate=True, buckets=4, causal_sdpa=True), True, precision="bf16"),
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


def executed_tokens(tokens: torch.Tensor, speed: SpeedOptions, layers: int = 12) -> float:
    """Token positions (in full-layer equivalents) the tower actually runs for this batch under ``speed``."""
    ends = eot_positions(tokens) + 1
    if speed.pack:  # real tokens only; the last block runs qkv (3 of 12 W^2) on all of them, the rest on EOT rows
        total, rows = int(ends.sum()), tokens.shape[0]
        return total - (total - rows) * (9 / 12) / layers
    if not speed.truncate:
        return tokens.numel()
    if speed.buckets <= 1:
        return int(ends.max()) * tokens.shape[0]
    chunks = torch.tensor_split(torch.sort(ends).values, speed.buckets)
    return int(sum(int(c.max()) * len(c) for c in chunks if len(c)))


def lever_flops(args, masked: torch.Tensor) -> float:
    """Text-tower matmul FLOPs of one steady-state step on ``masked`` (packed forward + input-gradient backward)."""
    import open_clip

    text = open_clip.get_model_config(args.backbone.split(":", 1)[0])["text_cfg"]
    tokens = executed_tokens(masked, SpeedOptions(pack=True), text["layers"])
    return text_flops_per_token(text["width"], text["layers"]) * 2 * tokens


def run_config(args, cfg: Config, batches, device: torch.device) -> dict:
    precision = cfg.precision or args.precision
    backbone = load_backbone(args.backbone, device=device, precision=precision)
    model = backbone.model
    if cfg.compile and not cfg.speed.pack:  # the packed tower compiles its own forward (SpeedOptions.compile)
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
    per_token = text_flops_per_token(width, layers)
    batch_flops = [  # counted outside the timed steps; masked: forward + input-gradient backward
        per_token
        * (
            (0 if cfg.target_cache else executed_tokens(orig, cfg.speed, layers))
            + 2 * executed_tokens(masked, cfg.speed, layers)
        )
        for orig, masked in batches
    ]

    def run_step(step: int) -> tuple[torch.Tensor, float]:
        i = step % len(batches)
        orig, masked = batches[i]
        orig, masked = orig.to(device, non_blocking=True), masked.to(device, non_blocking=True)
        target = targets[i].to(device).float() if cfg.target_cache else None
        randomness = draw_randomness(len(orig), backbone.embed_dim, phi, generator, device)
        optimizer.zero_grad(set_to_none=True)
        speed = dataclasses.replace(cfg.speed, causal_sdpa=False)  # the hint is installed around the loop
        out = lincir_loss(model, phi, orig, masked, target=target, randomness=randomness, speed=speed)
        scaler.scale(out.loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return out.loss, batch_flops[i]

    with causal_attention(model, cfg.speed.causal_sdpa):
        times, losses, flops = time_steps(args, device, run_step)
    return summarize(args, cfg.name, precision, times, losses, flops, device)


def time_steps(args, device: torch.device, run_step) -> tuple[list[float], list[float], float]:
    """Run ``args.warmup`` then ``args.steps`` steps; time each measured one between device synchronisations."""
    times, losses, flops = [], [], 0.0
    for step in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        loss, step_flops = run_step(step)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
            losses.append(loss.item())
            flops += step_flops
    return times, losses, flops


def summarize(args, name: str, precision: str, times: list[float], losses: list[float], flops: float, device) -> dict:
    """One configuration's record. samples/s is the best step (robust to other processes on a shared machine);
    the mean over the steps is reported beside it."""
    elapsed = sum(times)
    samples_per_s = args.batch / min(times)
    result = {
        "config": name,
        "precision": precision,
        "samples_per_s": round(samples_per_s, 2),
        "samples_per_s_mean": round(len(times) * args.batch / elapsed, 2),
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


def hf_text_tower(backbone_id: str, device: torch.device):
    """Upstream's model class: transformers' ``CLIPTextModelWithProjection`` (eager attention, fp16 weights), random
    init with the open_clip architecture's text config. Needs ``transformers``; upstream used 4.36, whose CLIP
    attention was eager-only."""
    import open_clip
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    name = backbone_id.split(":", 1)[0]
    cfg = open_clip.get_model_config(name)
    text = cfg["text_cfg"]
    config = CLIPTextConfig(
        vocab_size=text.get("vocab_size", 49408),
        hidden_size=text["width"],
        intermediate_size=int(text["width"] * text.get("mlp_ratio", 4.0)),
        num_attention_heads=text["heads"],
        num_hidden_layers=text["layers"],
        max_position_embeddings=text.get("context_length", 77),
        projection_dim=cfg["embed_dim"],
        hidden_act="quick_gelu" if name == "ViT-L-14" else "gelu",  # as the HF checkpoints upstream loads
        eos_token_id=49407,
        bos_token_id=49406,
        pad_token_id=0,
    )
    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIPTextModelWithProjection(config)
    dtype = torch.float16 if device.type == "cuda" else torch.float32  # CPU: no fp16 autocast, so fp32 throughout
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False), config


def hf_encode_with_pseudo_tokens(model, tokens: torch.Tensor, pseudo: torch.Tensor | None) -> torch.Tensor:
    """Upstream's ``encode_with_pseudo_tokens_HF``: 77 positions, additive causal mask, EOT pooling, projection.

    The causal mask is passed explicitly (transformers >= 5 would otherwise drop it from this call path)."""
    tm = model.text_model
    x = tm.embeddings.token_embedding(tokens)
    if pseudo is not None:
        x = torch.where((tokens == 259).unsqueeze(-1), pseudo.unsqueeze(1).to(x.dtype), x)
    length = tokens.shape[1]
    x = x + tm.embeddings.position_embedding(tm.embeddings.position_ids[:, :length])
    mask = torch.full((length, length), torch.finfo(x.dtype).min, device=x.device, dtype=x.dtype).triu(1)
    hidden = tm.encoder(inputs_embeds=x, attention_mask=mask[None, None]).last_hidden_state
    hidden = tm.final_layer_norm(hidden)
    pooled = hidden[torch.arange(len(tokens), device=tokens.device), tokens.argmax(-1)]
    return model.text_projection(pooled)


def run_hf_upstream(args, batches, device: torch.device) -> dict:
    """The official recipe's step on its own model class: both forwards over 77 positions, fp16 towers, phi fp32
    under fp16 autocast with a GradScaler (accelerate ``--mixed_precision fp16``), noise added in fp16."""
    model, config = hf_text_tower(args.backbone, device)
    width, layers = config.hidden_size, config.num_hidden_layers
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        phi = Phi.for_backbone(config.projection_dim, width).to(device).train()
    optimizer = torch.optim.AdamW(phi.parameters(), lr=1e-4, weight_decay=0.01)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    per_step = text_flops_per_token(width, layers) * 3 * args.batch * 77  # clean fwd + masked fwd/bwd, 77 each

    def run_step(step: int) -> tuple[torch.Tensor, float]:
        orig, masked = batches[step % len(batches)]
        orig, masked = orig.to(device, non_blocking=True), masked.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            target = hf_encode_with_pseudo_tokens(model, orig, None)
            features = target.clone()
            features += torch.rand(len(orig), device=device).unsqueeze(-1) * torch.randn(features.shape, device=device)
            pseudo = phi(features)
            predicted = hf_encode_with_pseudo_tokens(model, masked, pseudo)
        loss = torch.nn.functional.mse_loss(predicted.float(), target.float(), reduction="mean")
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss, per_step

    times, losses, flops = time_steps(args, device, run_step)
    precision = "fp16" if device.type == "cuda" else "fp32"
    return summarize(args, "hf-upstream", precision, times, losses, flops, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="ViT-B-32:random")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--pool", type=int, default=4, help="Distinct synthetic batches cycled through.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    parser.add_argument("--peak-tflops", type=float, default=None, help="Device peak (dense) for MFU.")
    parser.add_argument("--configs", default="upstream,+truncate,+buckets4,+sdpa,+target_cache,all")
    parser.add_argument("--json", default=None, help="Also write the results here.")
    args = parser.parse_args()
    choice = use_threads(args.threads)  # the one rule (cirbench/threads.py), printed and recorded
    args.threads = choice.threads
    print(choice.line())
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
    masks = write_mask_cache(Path(tempfile.mkdtemp(prefix="lincir-speed-masks-")), batches)
    results = []
    for name in args.configs.split(","):
        try:
            if name == "hf-upstream":
                result = run_hf_upstream(args, batches, device)
            elif name in LEVERS:
                result = run_lever(args, LEVERS[name], masks, device, functools.partial(lever_flops, args))
            else:
                result = run_config(args, CONFIGS[name], batches, device)
        except Exception as error:  # noqa: BLE001 - one failing variant (e.g. compile) must not lose the others
            result = {"config": name, "error": f"{type(error).__name__}: {error}"[:300]}
        results.append(result)
        print(json.dumps(result), flush=True)
        if args.json:  # after every configuration: a later one that hangs or is killed loses nothing
            with open(args.json, "w") as handle:
                json.dump({"header": header, "results": results}, handle, indent=2)
    shutil.rmtree(masks, ignore_errors=True)
    is_base = lambda r: "upstream" in r.get("config", "") or r.get("config") == "default"  # noqa: E731
    bases = [r for r in results if is_base(r) and "samples_per_s_mean" in r]
    for base in bases:  # means: a host_sync=log configuration has no per-step time
        for r in results:
            if "samples_per_s_mean" in r:
                speedup = r["samples_per_s_mean"] / base["samples_per_s_mean"]
                rate = f"{r['samples_per_s_mean']:>9.2f} samples/s (mean)"
                print(f"{r['config']:>24}: {rate}  x{speedup:.2f} vs {base['config']}")
    for r in results:
        if "skipped" in r:
            print(f"{r['config']:>24}: skipped ({r['skipped']})")


if __name__ == "__main__":
    main()
