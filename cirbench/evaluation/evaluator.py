"""The one evaluation entry point: ``evaluate(spec, settings)`` -> a result (reused, or computed and written).

Every path goes through here: ``cirbench eval``, ``eval --all``, the demo and LinCIR's in-training model selection.
The run key is computed from the spec and the split's data identity before any model is loaded, so a finished
result returns without paying a backbone or checkpoint load. Backbones are kept for the process; inside
``keep_splits()`` (what ``eval --all`` uses) loaded splits are kept too, so each split is read and its images
checked once however many methods run on it. Under torchrun (``EvalSettings.group``) rank 0 decides reuse, ranks,
scores and writes; every rank returns rank 0's result, so ``eval --all`` moves in step on every rank.

A stored result is reused only when it reads back whole (its digest: ``results.read_result``) and every identity it
depends on still matches, the images included (``evaluation.reuse``); a stale one is computed again and replaced,
with one line saying which identity changed. Computing holds the result's lock, so a second process asking for the
same result is refused in one line (``BusyError``) instead of interleaving its writes.

Device JPEG decoding (``settings.decode``, ``cirbench.decoding``) enters the run key as ``decode`` (the decoder's
name, e.g. ``decode_jpeg:cuda``) whenever it runs, and only then. Why: its pixels differ from PIL's by rounding, so
its numbers can differ slightly (features within cosine 0.99), and a result of one decoder must never be returned
for a request of the other; yet the CPU workers' runs, every run made so far and the default on CPU, keep their
keys. The decoder is chosen before loading from the mode, the device and the benchmark's reader; only the
backbone's preprocessing is known after loading, and when ``auto`` finds it has no tensor form the run falls back
to the workers and looks for that key's result before computing. The result records in ``run_settings.decode``
the mode asked, the decoder that ran, how many images each path decoded and, for ``auto``, why the workers did.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cirbench.backbones import load_backbone
from cirbench.benchmarks.base import Benchmark, BenchmarkSplit, Rankings
from cirbench.decoding import device_decoder, planned_decoder
from cirbench.encoders import GalleryEncoder
from cirbench.errors import BackboneError, MethodError, ResultError
from cirbench.evaluation.distributed import SINGLE, Group, broadcast
from cirbench.evaluation.engine import Progress, run_engine
from cirbench.evaluation.prepare import limit_queries, missing_images_hash, prepare_split, refuse_blocked
from cirbench.evaluation.reuse import images_identity, one_writer, reusable
from cirbench.evaluation.spec import RunSpec, key_fields
from cirbench.io import ensure_writable
from cirbench.methods.base import Method
from cirbench.progress import note, stage_progress
from cirbench.results import (
    BackboneRecord,
    BenchmarkRecord,
    MethodRecord,
    RunResult,
    environment,
    now,
    read_result,
    result_path,
    save_result,
)
from cirbench.runkey import run_key

_SPLITS: dict[tuple, BenchmarkSplit] | None = None  # a dict only inside keep_splits()
_BACKBONES: dict[tuple, GalleryEncoder] = {}


@dataclass(frozen=True)
class EvalSettings:
    """How to run; none of these is part of the run key (``skip_missing`` reaches it through the missing images,
    ``decode`` through the decoder that runs: see the module docstring)."""

    results_dir: Path | None = Path("results")  # None: compute metrics without writing a result
    overwrite: bool = False
    skip_missing: bool = False
    batch_size: int = 64
    num_workers: int = 0
    device: str = "cpu"
    use_cache: bool = True
    allow_download: bool = False
    show_progress: bool = False
    verify: bool = False  # hash the images' bytes (slow) instead of their path, size and mtime
    group: Group = SINGLE  # this process's place in a torchrun evaluation (``evaluation.distributed``)
    decode: str = "workers"  # workers | auto | device (``cirbench.decoding``); workers is every default


@dataclass
class Outcome:
    result: RunResult
    path: Path | None
    reused: bool
    rankings: Rankings | None = None


@contextlib.contextmanager
def keep_splits(store: dict | None = None) -> Iterator[None]:
    """Within the block, a split (with its image check) is read once however many runs use it; a caller that
    evaluates again later (model selection during training) passes its own ``store`` to keep them across blocks."""
    global _SPLITS
    outer = _SPLITS
    _SPLITS = store if store is not None else ({} if outer is None else outer)
    try:
        yield
    finally:
        _SPLITS = outer


def load_split(benchmark: Benchmark, split: str, root: Path | None, options: Mapping[str, Any]) -> BenchmarkSplit:
    """A split with validated options (read once inside ``keep_splits()``)."""
    key = (benchmark.name, split, str(root), repr(sorted(options.items())))
    if _SPLITS is not None and key in _SPLITS:
        return _SPLITS[key]
    data = benchmark.load(root, split, options)
    if _SPLITS is not None:
        _SPLITS[key] = data
    return data


def get_backbone(spec: RunSpec, device: str, allow_download: bool) -> GalleryEncoder:
    """Load what encodes the gallery once per (weights identity, device) for the whole process: the shared backbone,
    or the method's own encoder (``MethodEntry.gallery == "own"``).

    The identity was computed before loading (a local file's hash); a model whose loaded weights differ from it
    (the file changed in between) is refused and not kept, so a result is never stored under another file's key.
    """
    key = (spec.backbone.id, spec.backbone.weights_id, device)
    if key not in _BACKBONES:
        own = spec.method.entry.encoder
        if own is not None:
            backbone: GalleryEncoder = own.load(dict(spec.method.options), device, allow_download)
        else:
            backbone = load_backbone(
                spec.backbone.id, device=device, allow_download=allow_download, quick_gelu=spec.backbone.quick_gelu
            )
        if backbone.weights_id != spec.backbone.weights_id:
            raise BackboneError(
                f"{spec.backbone.id}: loaded weights {backbone.weights_id} differ from the ones identified "
                f"before loading ({spec.backbone.weights_id}); the model files changed during the run"
            )
        _BACKBONES[key] = backbone
    return _BACKBONES[key]


def build(spec: RunSpec, backbone: GalleryEncoder) -> Method:
    method = spec.method.entry.factory(backbone, spec.method.checkpoint, dict(spec.method.options))
    if not isinstance(method, Method):
        raise MethodError(
            f"method {spec.method.name!r}: its factory built {type(method).__name__}, not a subclass of "
            "cirbench.methods.base.Method (where the capabilities evaluation reads are declared)"
        )
    if spec.method.variant and not method.info.variant:
        method.info.variant = spec.method.variant
    return method


def evaluate(
    spec: RunSpec,
    settings: EvalSettings = EvalSettings(),
    *,
    method: Method | None = None,
    backbone: GalleryEncoder | None = None,
    progress: Progress | None = None,
) -> Outcome:
    """Reuse the result of ``spec`` when it exists (unless ``overwrite``), else compute it and write it.

    ``method`` / ``backbone``: already-built objects to evaluate (LinCIR's in-training phi); then nothing is loaded.
    """
    group = settings.group
    planned, why_workers = planned_decoder(
        settings.decode, backbone.device if backbone else settings.device, spec.benchmark
    )
    data = load_split(spec.benchmark, spec.split, spec.root, spec.options)
    refuse_blocked(data)
    missing = missing_images_hash(data, settings.skip_missing) if settings.skip_missing else None
    base = key_fields(spec, data.layout, data.annotations_sha256, missing)
    fields, key, path, found = _lookup(spec, settings, base, planned, data)
    if found is not None:
        return Outcome(found, path, reused=True)
    seen = _stamp(path)
    prepared, skipped = prepare_split(data, settings.skip_missing)
    prepared = limit_queries(prepared, spec.limit)
    if path is not None and group.main:
        writable(path.parent)
    with contextlib.ExitStack() as locks:
        locks.enter_context(one_writer(path, group))
        if broadcast(group, group.main and _stamp(path) != seen):  # another process wrote it meanwhile
            fields, key, path, found = _lookup(spec, settings, base, planned, data)
            if found is not None:
                return Outcome(found, path, reused=True)
        return _compute(
            spec,
            settings,
            data,
            prepared,
            skipped,
            base,
            planned,
            why_workers,
            (fields, key, path),
            locks,
            method,
            backbone,
            progress,
        )


def _compute(
    spec: RunSpec,
    settings: EvalSettings,
    data: BenchmarkSplit,
    prepared: BenchmarkSplit,
    skipped: Any,
    base: dict[str, Any],
    planned: str | None,
    why_workers: str | None,
    target: tuple[dict[str, Any], str, Path | None],
    locks: contextlib.ExitStack,
    method: Method | None,
    backbone: GalleryEncoder | None,
    progress: Progress | None,
) -> Outcome:
    """Encode, rank, score and write one result (its path locked by the caller)."""
    group = settings.group
    fields, key, path = target
    if settings.show_progress and group.main and progress is None:  # a line before the models load, not silence
        where = f"results: {settings.results_dir}" if path is not None else "not written"
        note(f"{spec.method.name} {spec.benchmark.name}/{spec.split}: computing, loading {spec.backbone.id} ({where})")
    images_sha256 = images_identity(data, prepared, settings.skip_missing, settings.verify) if group.main else None
    start = time.perf_counter()
    backbone = backbone or get_backbone(spec, settings.device, settings.allow_download)
    method = method or build(spec, backbone)
    method.check_split(data.queries)  # the whole split, before --limit and --skip-missing leave queries out
    decoder = None
    if planned is not None:
        decoder, why_workers = device_decoder(settings.decode, backbone, method.preprocess)
        if decoder is None:  # auto, and the backbone's preprocessing has no tensor form: the workers' key
            fields, key, workers_path, found = _lookup(spec, settings, base, None, data)
            if found is not None:
                return Outcome(found, workers_path, reused=True)
            if workers_path != path:
                locks.enter_context(one_writer(workers_path, group))
                path = workers_path
    label = f"{spec.method.name} {spec.benchmark.name}/{spec.split}"
    with stage_progress(label, settings.show_progress and group.main and progress is None) as bar:
        output = run_engine(
            method,
            backbone,
            prepared,
            spec.benchmark,
            batch_size=settings.batch_size,
            num_workers=settings.num_workers,
            use_cache=settings.use_cache,
            progress=progress or bar,
            images_id=images_sha256,
            group=group,
            index=spec.index,
            decoder=decoder,
            inputs=spec.method.entry.inputs,
        )
    if output is None:  # a torchrun rank other than 0: rank 0 ranks, scores and writes
        return Outcome(broadcast(group, None), path, reused=False)
    info = method.info
    train_meta = info.train_meta or {}
    result = RunResult(
        run_key=key,
        key_fields=fields,
        created_at=now(),
        method=MethodRecord(
            name=spec.method.name,
            variant=info.variant,
            version=spec.method.entry.version,
            options=dict(spec.method.options),
            config=method.describe(),
            checkpoint=info.checkpoint,
            checkpoint_id=spec.method.checkpoint_id or info.checkpoint_id,
            training_data=info.training_data,
            zero_shot=info.zero_shot,
            train_meta=info.train_meta,
        ),
        backbone=BackboneRecord(id=backbone.id, weights_id=backbone.weights_id, quick_gelu=backbone.quick_gelu),
        benchmark=BenchmarkRecord(
            name=spec.benchmark.name,
            split=spec.split,
            protocol_version=spec.benchmark.protocol_version,
            options=dict(data.options),
            facts=dict(data.facts),
            warnings=list(data.warnings),
            preprocess=method.preprocess,
            layout=data.layout,
            gallery_size=prepared.gallery_size,
            annotations_sha256=data.annotations_sha256,
            texts_with_placeholder=output.texts_with_placeholder,
            root=str(spec.root) if spec.root is not None else None,
            images_sha256=images_sha256,
            images_verified=settings.verify,
        ),
        metrics={k: round(float(v), 6) for k, v in output.metrics.items()},
        main_metric=spec.benchmark.main_metric_for(data.options),
        n_queries=output.n_queries,
        skipped=skipped,
        timing={
            **{k: round(v, 4) for k, v in output.timings.items()},
            "total_s": round(time.perf_counter() - start, 4),
            "train_s": train_meta.get("wall_time_s"),
            "train_device": train_meta.get("device_type"),
            "train_device_count": train_meta.get("device_count"),
        },
        run_settings={
            "batch_size": settings.batch_size,
            "num_workers": settings.num_workers,
            "dtype": str(backbone.dtype),
            "skip_missing": settings.skip_missing,
            "feature_cache": settings.use_cache,
            "limit": spec.limit,  # --limit N: only the first N queries (also in key_fields)
            "threads": torch.get_num_threads(),  # intra-op threads (the CLI sets them: cirbench/threads.py)
            "world_size": group.world,  # torchrun processes that encoded it (the numbers do not depend on it)
            "index": output.index,  # gallery search: name, parameters, and recall@50 for an approximate index
            "decode": {  # which decoder ran and how many images each path decoded (see the module docstring)
                "mode": settings.decode,
                "decoder": decoder.id if decoder is not None else "workers",
                "images": output.decoded,
                **({"why_workers": why_workers} if why_workers else {}),
            },
        },
        env=environment(str(backbone.device)),
    )
    if path is not None:
        save_result(result, path, rankings_record(output.rankings))
    broadcast(group, result)
    return Outcome(result, path, reused=False, rankings=output.rankings)


def _lookup(
    spec: RunSpec, settings: EvalSettings, base: dict[str, Any], decoder: str | None, data: BenchmarkSplit
) -> tuple[dict[str, Any], str, Path | None, RunResult | None]:
    """The run key's fields (``base`` plus the device decoder when one runs), the key, the result's path and the
    finished result to reuse there: read and verified (a damaged file is a one-line error), and only when every
    identity it depends on still matches (``evaluation.reuse``; a stale one is computed again and replaced). Rank 0
    decides: the ranks of another node may not see its results."""
    fields = {**base, "decode": decoder} if decoder is not None else base
    key = run_key(fields)
    if settings.results_dir is None:
        return fields, key, None, None
    path = result_path(settings.results_dir, spec.benchmark.name, spec.split, spec.method.name, spec.backbone.id, key)
    group = settings.group
    found = read_result(path) if group.main and path.is_file() and not settings.overwrite else None
    checks = {"limit": spec.limit, "skip_missing": settings.skip_missing}
    if found is not None and not reusable(found, fields, data, spec.benchmark, **checks):
        found = None
    return fields, key, path, broadcast(group, found)


def _stamp(path: Path | None) -> tuple[int, int] | None:
    """(size, mtime) of a result file, None when absent: whether another process wrote it since we looked."""
    try:
        info = path.stat() if path is not None else None
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns) if info is not None else None


def writable(folder: Path) -> None:
    """Preflight: the results folder takes a file (found before any model is loaded or image encoded)."""
    try:
        ensure_writable(folder)
    except OSError as error:
        raise ResultError(
            f"cannot write results under {folder} ({error.strerror or error}); choose another "
            "--results-dir or free space there"
        ) from error


def rankings_record(rankings: Rankings) -> dict[str, Any]:
    record: dict[str, Any] = {"top": rankings.top}
    if rankings.subset:
        record["subset"] = rankings.subset
    if rankings.scores:
        record["scores"] = rankings.scores
    positives = rankings.positive_ranks
    if positives:  # full-ranking positions (FreeDom's mAP, K > 50): statistics rescore stored runs from them
        record["positive_ranks"] = positives
    return record


def forget_backbones() -> None:
    """Release the backbones loaded so far (a long-lived process that is done evaluating)."""
    _BACKBONES.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
