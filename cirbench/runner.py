"""Glue between the CLI and the evaluation core: resolve names to objects, run, report progress.

Backbones are loaded once per id and shared by every method in ``eval --all``, and image features are shared
through the feature cache, so three methods on one benchmark cost about one gallery pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cirbench.commands import CLIError

console = Console(stderr=True)


@dataclass
class EvalRequest:
    method: str
    backbone: str | None
    benchmark: str
    split: str | None = None
    root: Path | None = None
    checkpoint: Path | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    protocol_options: dict[str, Any] = field(default_factory=dict)
    variant: str = ""


def load_split(bench: Any, root: Path | None, split: str, options: dict[str, Any] | None) -> Any:
    """Load a benchmark split, refusing unknown protocol options (a typo must not silently run the default)."""
    from cirbench.benchmarks.base import AnnotationError

    options = dict(options or {})
    known = bench.default_options()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise CLIError(
            f"unknown protocol option(s) {', '.join(unknown)} for {bench.name}; known: {', '.join(sorted(known))}"
        )
    try:
        return bench.load(root, split, options)
    except AnnotationError:
        raise
    except ValueError as error:  # a bad option value or split name: the user's to fix
        raise CLIError(str(error)) from error


_BACKBONES: dict[tuple[str, str, bool | None], Any] = {}


def get_backbone(backbone_id: str, device: str, allow_download: bool, quick_gelu: bool | None = None):
    """Load a backbone once per (id, device, activation) for the whole process."""
    from cirbench.backbones import load_backbone

    key = (backbone_id, device, quick_gelu)
    if key not in _BACKBONES:
        _BACKBONES[key] = load_backbone(
            backbone_id, device=device, allow_download=allow_download, quick_gelu=quick_gelu
        )
    return _BACKBONES[key]


def resolve_backbone_id(request: EvalRequest) -> str:
    """The backbone id to use: given, or inferred from the checkpoint by the method's adapter."""
    if request.backbone:
        return request.backbone
    from cirbench.methods import get_method_entry

    entry = get_method_entry(request.method)
    infer = getattr(entry, "infer_backbone", None)
    if infer is not None and request.checkpoint is not None:
        return infer(request.checkpoint)
    raise CLIError(f"give --backbone for method {request.method!r} (e.g. ViT-L-14:openai)")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def run_request(
    request: EvalRequest,
    *,
    results_dir: Path,
    overwrite: bool = False,
    skip_missing: bool = False,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "cpu",
    use_cache: bool = True,
    allow_download: bool = False,
    quick_gelu: bool | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Evaluate one (method, backbone, benchmark, split) and return the result record."""
    from cirbench.benchmarks import get_benchmark
    from cirbench.evaluate import run_and_save
    from cirbench.methods import build_method

    bench = get_benchmark(request.benchmark)
    split = request.split or bench.splits[0]
    data = load_split(bench, request.root, split, request.protocol_options)
    backbone = get_backbone(resolve_backbone_id(request), device, allow_download, quick_gelu)
    method = build_method(request.method, backbone, request.checkpoint, request.method_options)
    if request.variant and not method.info.variant:
        method.info.variant = request.variant
    with _progress() as progress:
        tasks: dict[str, Any] = {}

        def report(stage: str, done: int, total: int) -> None:
            if quiet:
                return
            if stage not in tasks:
                tasks[stage] = progress.add_task(f"{request.method} {bench.name}/{split} {stage}", total=total)
            progress.update(tasks[stage], completed=done, total=total)

        result, path, reused = run_and_save(
            method,
            backbone,
            data,
            bench,
            results_dir,
            overwrite=overwrite,
            skip_missing=skip_missing,
            batch_size=batch_size,
            num_workers=num_workers,
            use_cache=use_cache,
            progress=report,
        )
    if not quiet:
        print_result(result, path, reused)
    return result


def print_result(result: dict[str, Any], path: Path, reused: bool) -> None:
    metrics = result.get("metrics", {})
    # Headline metrics (no category/task/style prefix) first, the main metric leading.
    names = sorted(metrics, key=lambda k: (k != result.get("main_metric"), "_" in k))
    shown = ", ".join(f"{k} {metrics[k]:.2f}" for k in names[:8]) or "no labels (test split)"
    state = "reused" if reused else "wrote"
    skipped = result.get("skipped", {})
    dropped = (
        f" [yellow]skipped {skipped['images_missing']} missing images, {skipped['queries_dropped']} queries[/]"
        if skipped.get("images_missing")
        else ""
    )
    console.print(
        f"{result['method']['name']} | {result['backbone']['id']} | {result['benchmark']['name']}/"
        f"{result['benchmark']['split']}: {shown}{dropped}\n  {state} {path}",
        highlight=False,
    )


def run_all_cards(methods_dir: Path, benchmarks_dir: Path, **settings: Any) -> list[dict[str, Any]]:
    """Every method card x every benchmark card whose data and checkpoint are present; says why others skip."""
    from cirbench.backbones import BackboneError
    from cirbench.cards import load_benchmark_card, load_cards, load_method_card

    method_cards = load_cards(methods_dir, load_method_card)
    bench_cards = load_cards(benchmarks_dir, load_benchmark_card)
    if not method_cards or not bench_cards:
        raise CLIError(
            f"no cards found: {methods_dir}/*.yaml ({len(method_cards)}), {benchmarks_dir}/*.yaml ({len(bench_cards)})"
        )
    results, skipped = [], []
    for bcard in bench_cards:
        problem = _benchmark_unavailable(bcard)
        if problem:
            skipped.append((bcard.name, "*", problem))
            continue
        for mcard in method_cards:
            if mcard.benchmarks is not None and bcard.benchmark not in mcard.benchmarks:
                continue
            if mcard.checkpoint is not None and not mcard.checkpoint.exists():
                skipped.append((bcard.name, mcard.name, f"checkpoint {mcard.checkpoint} not found"))
                continue
            request = EvalRequest(
                method=mcard.method,
                backbone=mcard.backbone,
                benchmark=bcard.benchmark,
                split=bcard.split,
                root=bcard.root,
                checkpoint=mcard.checkpoint,
                method_options=mcard.options,
                protocol_options=bcard.options,
                variant=mcard.variant,
            )
            try:
                results.append(run_request(request, **settings))
            except BackboneError as error:
                skipped.append((bcard.name, mcard.name, str(error).split(";")[0]))
    for bench_name, method_name, why in skipped:
        console.print(f"[yellow]skipped[/] {method_name} on {bench_name}: {why}", highlight=False)
    console.print(f"{len(results)} results, {len(skipped)} skipped")
    return results


def _benchmark_unavailable(card) -> str | None:
    """Why a benchmark card cannot run here (None when its annotations and images are present)."""
    from cirbench.benchmarks import get_benchmark
    from cirbench.images import check_images

    try:
        data = load_split(get_benchmark(card.benchmark), card.root, card.split, card.options)
    except (FileNotFoundError, ValueError, CLIError) as error:
        return f"data not found ({str(error).splitlines()[0][:300]})"
    if data.protocol.get("gallery_known") is False or any(p.gallery == [] for p in data.parts):
        return "gallery unknown (CIRCO needs image_info_unlabeled2017.json)"
    missing = check_images(data.images.values()).missing
    if missing:
        return f"{len(missing)} images missing under {card.root} (run `cirbench data check`)"
    return None


def data_report(benchmark: str, root: Path | None, split: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """Counts and every problem found for a benchmark split on disk."""
    from cirbench.benchmarks import get_benchmark
    from cirbench.images import check_images

    bench = get_benchmark(benchmark)
    split = split or bench.splits[0]
    report: dict[str, Any] = {
        "benchmark": benchmark,
        "split": split,
        "root": str(root) if root else None,
        "layout": "",
        "n_queries": 0,
        "gallery_size": 0,
        "n_images": 0,
        "n_missing": 0,
        "missing_first": [],
        "problems": [],
    }
    try:
        data = load_split(bench, root, split, options)
    except (FileNotFoundError, ValueError, CLIError) as error:
        report["problems"].append(str(error))
        report["ok"] = False
        return report
    check = check_images(data.images.values())
    report.update(
        layout=data.layout,
        n_queries=len(data.queries),
        gallery_size=data.gallery_size,
        n_images=len(data.images),
        n_missing=len(check.missing),
        missing_first=[str(ref.path) for ref in check.missing[:10]],
        parts={part.name or "all": len(part.queries) for part in data.parts},
    )
    if check.missing:
        report["problems"].append(check.summary(limit=10))
    if data.protocol.get("gallery_known") is False or any(p.gallery == [] for p in data.parts):
        report["problems"].append(
            "the gallery is unknown: CIRCO needs COCO2017_unlabeled/annotations/image_info_unlabeled2017.json"
        )
    report["problems"].extend(str(w) for w in data.protocol.get("warnings") or [])
    report["ok"] = not report["problems"]
    return report
