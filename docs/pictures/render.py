"""Render the three pictures of docs/pictures/ with the cirbench on the path: the `inspect` grid of a stored shapes
run, the loss curve of a LinCIR run folder and the leaderboard chart of results/.

    python docs/pictures/render.py --tag after --run runs/demo/seed-0/lincir
    PYTHONPATH=/tmp/old-cirbench python docs/pictures/render.py --tag before --run runs/demo/seed-0/lincir

The loss curve is drawn from a copy of the run's ``metrics.jsonl`` and ``config.json`` in a scratch folder of the
same two-level name (``seed-0/lincir``); each PNG is downscaled and palette-quantised to stay small in git.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[2]
GRID_RUN = REPO / "results/runs/shapes/test/lincir--shapes-clip_v2--740f01544013.json"
NAMES = {"grid": ("inspect-grid", 900, 128), "loss": ("loss-curve", 900, 128), "chart": ("leaderboard-chart", 1300, 64)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag", required=True, help="before or after")
    parser.add_argument("--run", type=Path, required=True, help="a LinCIR run folder (metrics.jsonl, config.json)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()

    from cirbench import leaderboard as lb
    from cirbench.lincir.trainlog import read_metrics, write_loss_curve
    from cirbench.stats.inspect import per_query_table, write_grid
    from cirbench.stats.runs import load_run

    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch)
        entries = lb.collect_entries(REPO / "results", REPO / "results/reported.yaml")
        lb.write_chart(entries, raw / "chart.png")
        run = raw / args.run.resolve().parent.name / args.run.resolve().name
        run.mkdir(parents=True)
        for name in ("metrics.jsonl", "config.json"):
            shutil.copy(args.run / name, run / name)
        write_loss_curve(read_metrics(run / "metrics.jsonl"), run / "loss_curve.png")  # its title reads config.json
        shutil.copy(run / "loss_curve.png", raw / "loss.png")
        scores = load_run(REPO / "results", str(GRID_RUN), None)
        write_grid(scores, per_query_table(scores), raw / "grid.png")
        for key, (name, width, colours) in NAMES.items():
            image = Image.open(raw / f"{key}.png").convert("RGB")
            if image.width > width:
                image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
            image = image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
            target = args.out / f"{name}-{args.tag}.png"
            image.save(target, optimize=True)
            print(f"{target}: {target.stat().st_size // 1024} KB, {image.size[0]}x{image.size[1]}")


if __name__ == "__main__":
    main()
