"""Typed options of ``cirbench eval`` that live outside ``commands/core.py`` (which stays under the size limit)."""

from __future__ import annotations

from typing import Annotated

import typer

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
        help="Gallery search: exact (default), faiss-flat, faiss-ivf or faiss-hnsw (approximate ones enter the "
        "run key and store their recall@50; faiss: pip install 'cirbench\\[scale]').",
    ),
]
IndexParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--index-param", help="Index parameter KEY=VALUE (faiss-ivf: nlist, nprobe; faiss-hnsw: M, ef_search)."
    ),
]
