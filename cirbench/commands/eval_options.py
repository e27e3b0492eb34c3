"""Typed options of ``cirbench eval``, ``score`` and ``data check``, declared once (``commands/core.py`` stays under the
size limit). ``{benchmarks}`` and ``{methods}`` in a help text are the registered names, filled in when the help is
shown (``commands.help_text``); the ``--results-dir`` default is the one results location (``paths``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cirbench.commands.help_text import BACKBONES, BENCHMARKS, METHODS

MethodOpt = Annotated[
    str | None, typer.Option("--method", "-m", help=f"A registered method: {METHODS} (options: `cirbench list`).")
]
BackboneOpt = Annotated[
    str | None,
    typer.Option(
        "--backbone",
        "-b",
        help=f"A registered backbone ({BACKBONES}), an open_clip MODEL:TAG (weights cached here, or with "
        "--allow-download), MODEL:/path/to/ckpt or cirbench-tiny:random.",
    ),
]
BenchmarkOpt = Annotated[str | None, typer.Option("--benchmark", help=f"A registered benchmark: {BENCHMARKS}.")]
SplitOpt = Annotated[str | None, typer.Option("--split", help="Benchmark split (default: its first split).")]
RootOpt = Annotated[Path | None, typer.Option("--root", help="Dataset folder (any supported layout).")]
SetOpt = Annotated[list[str] | None, typer.Option("--option", "-o", help="Method option KEY=VALUE (repeatable).")]
ProtocolOpt = Annotated[
    list[str] | None,
    typer.Option("--protocol", "-p", help="Benchmark protocol option KEY=VALUE (repeatable; lists: a,b)."),
]
ResultsOpt = Annotated[
    Path,
    typer.Option(
        "--results-dir",
        help="Where result files go (runs/ inside). Default: the results/ of the nearest folder upward that holds "
        "results/runs/, else $CIRBENCH_RESULTS, else ./results.",
    ),
]
BatchSizeOpt = Annotated[
    int,
    typer.Option(
        "--batch-size",
        help="Gallery images per forward pass of the image encoder (queries go to the method 4x as many at a "
        "time). Not the method option -o batch_size, which is texts per forward pass inside the method. Neither "
        "changes the numbers or the run key.",
    ),
]

DecodeOpt = Annotated[
    str,
    typer.Option(
        "--decode",
        help="Image decoding: workers (the default: PIL in the --workers processes, as the official code), auto "
        "(JPEGs on the device when it is CUDA and the backbone's preprocessing has a tensor form, else workers) or "
        "device (decode_jpeg batched on --device; an error where it does not apply). Device decoding is faster on a "
        "GPU but rounds differently: it enters the run key and the cache key, and the leaderboard marks its rows.",
    ),
]
IndexOpt = Annotated[
    str,
    typer.Option(
        "--index",
        help="Gallery search: one of {indexes} (exact is the default; approximate ones enter the run key and store "
        "their recall@50; faiss: pip install 'cirbench\\[scale]').",
    ),
]
IndexParamOpt = Annotated[
    list[str] | None,
    typer.Option("--index-param", help="Index parameter KEY=VALUE ({index_params})."),
]
