"""``cirbench data prepare-coco``: make Pic2Word's COCO query set, seeded (Pic2Word releases none)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cirbench.commands import data_app


@data_app.command("prepare-coco")
def prepare_coco_command(
    root: Annotated[Path, typer.Option(help="Pic2Word's data/coco folder: val2017/ in, coco_eval.csv out.")],
    instances: Annotated[
        Path | None, typer.Option(help="instances_val2017.json (default: ROOT/annotations/instances_val2017.json).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the object draw (Pic2Word's own script has none).")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace a query set made with another seed or tool.")] = False,
) -> None:
    """Draw one object per val2017 image as Pic2Word's data/coco/prepare_data.py does, from a seed.

    Writes coco_eval.csv, val2017_masked/ and coco_prepare.json (seed and hashes; every pic2word-coco result names
    the draw). With random.seed(SEED) set first, Pic2Word's script writes byte-identical files. Needs pycocotools
    (pip install 'cirbench[coco]'). An interrupted run resumes."""
    from cirbench.benchmarks.coco_prepare import prepare_coco
    from cirbench.progress import stage_progress

    with stage_progress("prepare pic2word-coco", True) as bar:
        progress = (lambda done, total: bar("masked images", done, total)) if bar else None
        record = prepare_coco(root, instances, seed, overwrite, progress)
    typer.echo(
        f"{record['queries']} queries (seed {seed}): {root / 'coco_eval.csv'} sha256 {record['csv_sha256'][:12]}; "
        f"{record['masked_written']} masked images written, {record['masked_kept']} kept from an earlier run"
    )
