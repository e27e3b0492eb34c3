"""``cirbench shapes pretrain|accuracy``: regenerate or check the shipped tiny shapes CLIP."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from cirbench.commands import shapes_app
from cirbench.errors import UsageError


@shapes_app.command("pretrain")
def pretrain_command(
    out: Annotated[Path, typer.Option(help="Folder for model.safetensors and meta.json.")] = Path("runs/shapes_clip"),
    steps: Annotated[int, typer.Option(min=1, help="Training steps.")] = 1000,
    batch: Annotated[int, typer.Option(min=2, help="Batch size (distinct attribute combinations per batch).")] = 128,
    seed: Annotated[int, typer.Option(help="Seed (model init and data order).")] = 0,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 5e-4,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.1,
    warmup: Annotated[int, typer.Option(min=0, help="Warm-up steps.")] = 50,
    threads: Annotated[int, typer.Option(min=1, help="torch threads.")] = 2,
    eval_every: Annotated[
        int, typer.Option(min=0, help="Zero-shot accuracy check every N steps (0: only at the end).")
    ] = 250,
    multi_positive: Annotated[
        bool,
        typer.Option(
            "--multi-positive",
            help="Every matching caption in the batch is a positive (shapes-clip:v1); default: CLIP's objective, "
            "the paired caption only (shapes-clip:v2).",
        ),
    ] = False,
) -> None:
    """Pretrain the tiny shapes CLIP contrastively on rendered image-caption pairs (the shipped shapes-clip:v2:
    --out cirbench/assets/shapes_clip_v2 with the defaults; 30 minutes on 2 busy CPU cores)."""
    from cirbench.io import ensure_writable
    from cirbench.shapes.pretrain import pretrain_shapes_clip

    if not (math.isfinite(lr) and lr > 0):  # AdamW's own refusal would be an internal error after the set-up
        raise UsageError(f"--lr {lr!r} is not valid: give a finite learning rate > 0 (default 5e-4)")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise UsageError(f"--weight-decay {weight_decay!r} is not valid: give a finite number >= 0 (default 0.1)")
    ensure_writable(out)  # a full or read-only disk is found now, not after the training
    pretrain_shapes_clip(
        out,
        steps=steps,
        batch=batch,
        seed=seed,
        lr=lr,
        weight_decay=weight_decay,
        warmup=warmup,
        threads=threads,
        eval_every=eval_every,
        multi_positive=multi_positive,
        log=lambda message: typer.echo(message, err=True),
    )


@shapes_app.command("accuracy")
def accuracy_command(
    weights: Annotated[Path | None, typer.Option(help="Weights folder (default: the shipped ones).")] = None,
) -> None:
    """Zero-shot attribute accuracy (image -> caption over all 576 combinations) on held-out renderings."""
    from cirbench.shapes.backbone import ASSET_DIR, load_model
    from cirbench.shapes.pretrain import zero_shot_accuracy

    model, meta = load_model(weights or ASSET_DIR)
    accuracy = zero_shot_accuracy(model)
    typer.echo(" ".join(f"{k}={v:.2f}" for k, v in accuracy.items()))
    recorded = meta.get("zero_shot_accuracy") or meta.get("accuracy")
    if recorded:
        typer.echo(f"recorded in meta.json: {recorded}")
