"""``--seeds``: one list of seeds for demo, training and evaluation, and the checkpoint of each seed."""

from __future__ import annotations

from pathlib import Path

import typer

from cirbench.errors import UsageError, shown

MAX_SEED = 2**32 - 1


def parse_seeds(text: str) -> tuple[int, ...]:
    """ "0,1,2" -> (0, 1, 2); anything else is a one-line error naming the value."""
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"{shown(text)} is not a comma-separated list of integers, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise typer.BadParameter(f"{shown(text)}: give one or more distinct seeds, e.g. 0,1,2")
    bad = [seed for seed in seeds if not 0 <= seed <= MAX_SEED]
    if bad:  # numpy and the training config take seeds in [0, 2**32 - 1]; torch would wrap a negative one
        raise typer.BadParameter(f"{shown(text)}: seed {shown(bad[0])} is not in [0, {MAX_SEED}]")
    return seeds


def seed_checkpoints(checkpoint: Path | None, seeds: str | None) -> list[Path | None]:
    """``--checkpoint runs/x/seed-{seed}/lincir --seeds 0,1,2`` -> the three paths; without --seeds, the one.

    Checked before anything loads: ``{seed}`` without ``--seeds`` (a path that cannot exist), ``--seeds`` without
    ``{seed}`` (every seed would evaluate one file), and a seed whose checkpoint is missing."""
    example = "e.g. --checkpoint runs/lincir/seed-{seed} --seeds 0,1,2"
    if seeds is None:
        if checkpoint is not None and "{seed}" in str(checkpoint) and not checkpoint.exists():
            raise UsageError(
                f"--checkpoint {shown(str(checkpoint))} holds {{seed}} but --seeds is not given: add --seeds to "
                f"evaluate one checkpoint per seed ({example}), or give one checkpoint's path"
            )
        return [checkpoint]
    if checkpoint is None or "{seed}" not in str(checkpoint):
        given = "no --checkpoint" if checkpoint is None else f"--checkpoint {shown(str(checkpoint))} has no {{seed}}"
        raise UsageError(
            f"--seeds {shown(seeds)} evaluates one checkpoint per seed, but {given}: put {{seed}} where the seed goes "
            f"in the path ({example})"
        )
    try:
        parsed = parse_seeds(seeds)
    except typer.BadParameter as error:  # one line here, like every other refusal of eval's flags
        raise UsageError(f"--seeds {error.message}") from None
    paths = {seed: Path(str(checkpoint).replace("{seed}", str(seed))) for seed in parsed}
    missing = [f"seed {seed}: {path}" for seed, path in paths.items() if not path.exists()]
    if missing:
        raise UsageError(
            f"--seeds {shown(seeds)} with --checkpoint {shown(str(checkpoint))}: {len(missing)} of {len(paths)} "
            f"checkpoints do not exist ({'; '.join(missing[:3])}); train those seeds (cirbench train lincir --seeds) "
            "or list only the seeds you have"
        )
    return list(paths.values())
