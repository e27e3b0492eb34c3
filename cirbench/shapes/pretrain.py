"""Contrastive pretraining of the tiny shapes CLIP on freshly rendered image–caption pairs.

CLIP's symmetric InfoNCE with a learnable logit scale. Partial captions ("red circle") truly describe several
images of a batch, so every image a caption matches counts as a positive (targets spread uniformly over them)
instead of being pushed away as a false negative (``--plain-infonce`` turns this off); each batch holds
distinct attribute combinations.
Deterministic given the seed and the thread count: fixed init seed, a seeded data stream, fixed threads.

    cirbench shapes pretrain --out cirbench/assets/shapes_clip --steps 1000 --batch 128 --seed 0
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cirbench.io import atomic_write_text
from cirbench.shapes.backbone import (
    BACKBONE_ID,
    CONFIG_MODEL_FILE,
    MEAN,
    MODEL_NAME,
    STD,
    create_model,
    image_transform,
    load_model,
    save_weights,
)
from cirbench.shapes.captions import canonical_caption, caption, vocabulary_texts
from cirbench.shapes.world import (
    ATTRIBUTES,
    IMAGE_SIZE,
    SALT_HELDOUT,
    SALT_TRAIN,
    all_attributes,
    render,
    rng_for,
    world_hash,
)

PLACEHOLDER_IDS = (259, 265)  # "$" (LinCIR, SEARLE) and "*" (Pic2Word)
HELDOUT_SEED = 0


def kept_token_ids() -> list[int]:
    """Token ids the grammar can produce, start/end of text and the placeholder ids; all others stay zero."""
    from open_clip.tokenizer import _tokenizer

    ids = {_tokenizer.encoder["<start_of_text>"], _tokenizer.encoder["<end_of_text>"], *PLACEHOLDER_IDS}
    for text in vocabulary_texts():
        ids.update(_tokenizer.encode(text))
    return sorted(ids)


def init_model(seed: int) -> Any:
    """Fresh model whose token-embedding rows outside ``kept_token_ids`` are zero (and stay zero)."""
    model = create_model(seed)
    keep = torch.zeros(model.token_embedding.weight.shape[0], dtype=torch.bool)
    keep[kept_token_ids()] = True
    with torch.no_grad():
        model.token_embedding.weight[~keep] = 0
    return model


def sample_batch(
    rng: np.random.Generator, batch: int, transform: Any, tokenizer: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rendered images, tokenized captions and the (image, caption) match matrix of one batch."""
    combos = all_attributes()
    picks = rng.choice(len(combos), size=batch, replace=batch > len(combos))
    attrs = [combos[int(i)] for i in picks]
    images = torch.stack([transform(render(a, rng)) for a in attrs])
    captions = [caption(a, rng) for a in attrs]
    tokens = tokenizer([c.text for c in captions])
    matches = torch.tensor([[c.matches(a) for c in captions] for a in attrs])
    return images, tokens, matches


def contrastive_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    matches: torch.Tensor,
) -> torch.Tensor:
    """Symmetric InfoNCE; ``matches[i, j]`` marks caption j as a positive for image i."""
    logits = logit_scale.exp() * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    targets = matches.float()
    loss_image = -(targets / targets.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    loss_text = -(targets / targets.sum(0, keepdim=True) * F.log_softmax(logits, dim=0)).sum(0).mean()
    return (loss_image + loss_text) / 2


@torch.no_grad()
def zero_shot_accuracy(
    model: Any, seed: int = HELDOUT_SEED, renders: int = 2, limit: int | None = None
) -> dict[str, float]:
    """Image→text accuracy (%) over all 576 full captions on held-out renderings, overall and per attribute.

    Per-attribute accuracy reads the same argmax. Held-out images use their own random stream
    (``SALT_HELDOUT``), never seen in pretraining or the benchmark.
    ``limit`` evaluates only every k-th image so that at most ``limit`` images are used (quick checks).
    """
    model.eval()
    combos = all_attributes()
    transform = image_transform(IMAGE_SIZE)
    items = [(i, a) for r in range(renders) for i, a in enumerate(combos)]
    if limit is not None and limit < len(items):
        items = items[:: math.ceil(len(items) / limit)]
    from open_clip import get_tokenizer

    tokens = get_tokenizer(MODEL_NAME)([canonical_caption(a) for a in combos])
    text = F.normalize(model.encode_text(tokens), dim=-1)
    images = torch.stack([transform(render(a, rng_for(SALT_HELDOUT, seed, n))) for n, (_, a) in enumerate(items)])
    image = torch.cat([F.normalize(model.encode_image(chunk), dim=-1) for chunk in images.split(256)])
    predicted = [combos[int(j)] for j in (image @ text.T).argmax(1)]
    truth = [a for _, a in items]
    result = {"exact": 100.0 * np.mean([p == t for p, t in zip(predicted, truth, strict=True)])}
    for name in ATTRIBUTES:
        result[name] = 100.0 * np.mean(
            [getattr(p, name) == getattr(t, name) for p, t in zip(predicted, truth, strict=True)]
        )
    result["images"] = float(len(items))
    return {k: round(float(v), 2) for k, v in result.items()}


def _lr(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain_shapes_clip(
    out_dir: str | Path,
    steps: int = 1000,
    batch: int = 128,
    seed: int = 0,
    lr: float = 5e-4,
    weight_decay: float = 0.1,
    warmup: int = 50,
    threads: int = 2,
    eval_every: int = 250,
    log_every: int = 25,
    multi_positive: bool = False,
    log: Any = print,
) -> dict[str, Any]:
    """Pretrain the shapes CLIP; write ``model.safetensors`` and ``meta.json`` (with accuracy) to ``out_dir``.

    The recorded accuracy is measured on the saved fp16 weights reloaded, i.e. on exactly what ships.
    """
    from open_clip import get_tokenizer

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    model = init_model(seed)
    model.train()
    tokenizer = get_tokenizer(MODEL_NAME)
    transform = image_transform(IMAGE_SIZE)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "logit_scale" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "logit_scale" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    rng = rng_for(SALT_TRAIN, seed)
    start = time.time()
    history: list[dict[str, float]] = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, steps, lr, warmup)
        images, tokens, matches = sample_batch(rng, batch, transform, tokenizer)
        if not multi_positive:  # plain CLIP: only the paired caption is a positive
            matches = torch.eye(len(matches), dtype=torch.bool)
        loss = contrastive_loss(model.encode_image(images), model.encode_text(tokens), model.logit_scale, matches)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if (step + 1) % log_every == 0 or step == 0:
            log(
                f"step {step + 1}/{steps} loss {loss.item():.4f} scale {model.logit_scale.exp().item():.1f} "
                f"{time.time() - start:.0f}s"
            )
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            acc = zero_shot_accuracy(model, renders=1)
            history.append({"step": step + 1, **acc})
            log(f"step {step + 1}: zero-shot {acc}")
            model.train()
    train_seconds = time.time() - start
    model.eval()
    accuracy_fp32 = zero_shot_accuracy(model)
    config = json.loads(CONFIG_MODEL_FILE.read_text())
    command = (
        f"cirbench shapes pretrain --out {out_dir} --steps {steps} --batch {batch} --seed {seed} "
        f"--lr {lr} --weight-decay {weight_decay} --warmup {warmup} --threads {threads}"
        + (" --multi-positive" if multi_positive else "")
    )
    meta: dict[str, Any] = {
        "backbone_id": "shapes-clip:v1" if multi_positive else BACKBONE_ID,  # the shipped version of this objective
        "model": MODEL_NAME,
        "config": config,
        "image_size": IMAGE_SIZE,
        "mean": list(MEAN),
        "std": list(STD),
        "world_hash": world_hash(),
        "seed": seed,
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "weight_decay": weight_decay,
        "warmup": warmup,
        "threads": threads,
        "multi_positive": multi_positive,
        "loss": "symmetric InfoNCE, learnable logit scale; "
        + ("every matching pair in the batch is a positive" if multi_positive else "paired caption only"),
        "train_seconds": round(train_seconds, 1),
        "final_loss": round(loss.item(), 4),
        "accuracy_heldout": {"seed": HELDOUT_SEED, "renders_per_combination": 2, "candidates": 576},
        "accuracy_fp32": accuracy_fp32,
        "history": history,
        "regenerate": command,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    out_dir = Path(out_dir)
    save_weights(model, out_dir, kept_token_ids(), meta)
    shipped, _ = load_model(out_dir)
    meta["accuracy"] = zero_shot_accuracy(shipped)
    meta_path = out_dir / "meta.json"
    saved = json.loads(meta_path.read_text())
    saved["accuracy"] = meta["accuracy"]
    atomic_write_text(meta_path, json.dumps(saved, indent=2) + "\n")
    log(f"done in {train_seconds:.0f}s; zero-shot accuracy of the saved weights: {meta['accuracy']}")
    return saved
