"""``--seeds``: one list of seeds for demo, training and evaluation, and the checkpoint of each seed."""

from __future__ import annotations

from pathlib import Path

import typer

from cirbench.errors import UsageError


def parse_seeds(text: str) -> tuple[int, ...]:
    """ "0,1,2" -> (0, 1, 2); anything else is a one-line error naming the value."""
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of integers, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise typer.BadParameter(f"{text!r}: give one or more distinct seeds, e.g. 0,1,2")
    return seeds


def seed_checkpoints(checkpoint: Path | None, seeds: str | None) -> list[Path | None]:
    """``--checkpoint runs/x/seed-{seed}/lincir --seeds 0,1,2`` -> the three paths; without --seeds, the one."""
    if seeds is None:
        return [checkpoint]
    if checkpoint is None or "{seed}" not in str(checkpoint):
        raise UsageError("--seeds needs a --checkpoint path with {seed} in it, e.g. runs/lincir/seed-{seed}")
    return [Path(str(checkpoint).replace("{seed}", str(seed))) for seed in parse_seeds(seeds)]
