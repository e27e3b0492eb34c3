"""Core commands: ``eval`` (one run or ``--all``), ``score``, ``data check``, ``cache ls/clear``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cirbench.commands import app, cache_app, data_app, listing  # noqa: F401 - `list` registers first
from cirbench.commands.eval_options import (
    BackboneOpt,
    BatchSizeOpt,
    BenchmarkOpt,
    DecodeOpt,
    IndexOpt,
    IndexParamOpt,
    MethodOpt,
    ProtocolOpt,
    ResultsOpt,
    RootOpt,
    SetOpt,
    SplitOpt,
)
from cirbench.commands.help_text import BENCHMARKS
from cirbench.commands.seeds import seed_checkpoints
from cirbench.commands.threads_option import ThreadsOpt, use_threads
from cirbench.errors import UsageError, shown

if TYPE_CHECKING:
    from cirbench.evaluation import Outcome


def pick_device(device: str) -> str:
    from cirbench.devices import resolve_device

    return resolve_device(device)


def print_outcome(outcome: Outcome) -> None:
    from cirbench.console import make_console

    console = make_console(stderr=True)

    result = outcome.result
    metrics = result.metrics
    # Headline metrics (no category/task/style prefix) first, the main metric leading.
    names = sorted(metrics, key=lambda k: (k != result.main_metric, "_" in k))
    shown = ", ".join(f"{k} {metrics[k]:.2f}" for k in names[:8]) or "no labels (test split)"
    state = "reused" if outcome.reused else "wrote"
    skipped = result.skipped
    dropped = (
        f" [yellow]skipped {skipped.images_missing} missing images, {skipped.images_unreadable} unreadable, {skipped.queries_dropped} queries[/]"  # noqa: E501
        if skipped.images_missing or skipped.images_unreadable
        else ""
    )
    limit = result.key_fields.get("limit")
    if limit is not None:
        dropped += f" [yellow](first {limit} queries only: --limit)[/]"
    index = result.run_settings.get("index") or {}
    if index.get("recall@50") is not None:
        dropped += f" [yellow]({index['name']}: recall@50 {index['recall@50']:.3f} against exact search)[/]"
    console.print(f"{result.label}: {shown}{dropped}\n  {state} {outcome.path}", highlight=False)


@app.command("eval")
def eval_command(
    method: MethodOpt = None,
    backbone: BackboneOpt = None,
    benchmark: BenchmarkOpt = None,
    split: SplitOpt = None,
    root: RootOpt = None,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", "-c", help="Method checkpoint ({seed} is replaced with --seeds).")
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(help="Comma-separated seeds: evaluate the checkpoint of each ({seed} in --checkpoint)."),
    ] = None,
    option: SetOpt = None,
    protocol: ProtocolOpt = None,
    all_cards: Annotated[bool, typer.Option("--all", help="Every method card x every benchmark card.")] = False,
    methods_dir: Annotated[
        Path | None, typer.Option(help="Method cards for --all (default: nearest methods/ upward, else built-in).")
    ] = None,
    benchmarks_dir: Annotated[
        Path | None,
        typer.Option(help="Benchmark cards for --all (default: nearest benchmarks/ upward, else built-in)."),
    ] = None,
    results_dir: ResultsOpt = Path("results"),
    overwrite: Annotated[bool, typer.Option(help="Recompute even if the result exists.")] = False,
    skip_missing: Annotated[
        bool, typer.Option(help="Evaluate without missing images; the dropped count goes in the result.")
    ] = False,
    batch_size: BatchSizeOpt = 64,
    workers: Annotated[int, typer.Option(help="Image decoding workers.")] = 0,
    decode: DecodeOpt = "workers",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the feature cache.")] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Identify images by their bytes (hashes every file), not path/size/mtime.")
    ] = False,
    allow_download: Annotated[bool, typer.Option(help="Allow downloading pretrained weights.")] = False,
    quick_gelu: Annotated[
        bool | None,
        typer.Option(
            "--quick-gelu/--no-quick-gelu",
            help="Activation of a local MODEL:/path checkpoint (OpenAI-derived weights use QuickGELU).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result(s) as JSON.")] = False,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", help="Only the first N queries: a smoke test, stored as its own run, never ranked as a full one."
        ),
    ] = None,
    index: IndexOpt = "exact",
    index_param: IndexParamOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Evaluate a method on a benchmark split (or every card with --all) and write result files.

    Under `torchrun --nproc_per_node N -m cirbench eval ...` every process encodes a shard of the images and
    queries; rank 0 ranks, scores and writes the result (the numbers do not depend on N)."""
    from cirbench.decoding import parse_decode
    from cirbench.evaluation import EvalSettings, RunRequest, evaluate, resolve
    from cirbench.evaluation.distributed import joined
    from cirbench.options import require_bounds, split_pairs
    from cirbench.search import parse_index

    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit}: give a positive number of queries (e.g. --limit 20)")
    require_bounds("--batch-size", batch_size, minimum=1)
    require_bounds("--workers", workers, minimum=0)
    index_params = split_pairs(index_param)
    parse_index(index, index_params)  # a bad --index (or --decode) is one line before anything loads
    parse_decode(decode)
    use_threads(threads, say=not as_json)  # the one thread rule (cirbench/threads.py); run_settings records it
    with joined(pick_device(device)) as (group, rank_device):
        settings = EvalSettings(
            results_dir=results_dir,
            overwrite=overwrite,
            skip_missing=skip_missing,
            batch_size=batch_size,
            num_workers=workers,
            device=rank_device,
            use_cache=not no_cache,
            allow_download=allow_download,
            show_progress=not as_json and group.main,
            verify=verify,
            group=group,
            decode=decode,
        )
        quiet = as_json or not group.main  # only rank 0 prints (other ranks print errors only)
        if all_cards:
            outcomes = _eval_all(
                methods_dir,
                benchmarks_dir,
                settings,
                quick_gelu,
                quiet=quiet,
                limit=limit,
                index=(index, index_params),
            )
        else:
            if not (method and benchmark):
                raise UsageError("give --method and --benchmark (and --backbone, --root), or --all")
            checkpoints = seed_checkpoints(checkpoint, seeds)
            request = RunRequest(
                method=method,
                backbone=backbone,
                benchmark=benchmark,
                split=split,
                root=root,
                checkpoint=checkpoints[0],
                method_options=split_pairs(option),
                protocol_options=split_pairs(protocol),
                quick_gelu=quick_gelu,
                limit=limit,
                index=index,
                index_params=index_params,
            )
            outcomes = []
            for path in checkpoints:  # one checkpoint, or one per seed (the leaderboard shows their mean ± sd)
                outcomes.append(evaluate(resolve(dataclasses.replace(request, checkpoint=path)), settings))
                if not quiet:
                    print_outcome(outcomes[-1])
    if as_json and group.main:
        typer.echo(json.dumps([o.result.model_dump(mode="json", exclude={"env"}) for o in outcomes], indent=2))


def _eval_all(
    methods_dir: Path | None,
    benchmarks_dir: Path | None,
    settings,
    quick_gelu: bool | None,
    quiet: bool,
    limit: int | None = None,
    index: tuple[str, dict[str, str]] = ("exact", {}),
) -> list[Outcome]:
    from cirbench.cards import find_card_dirs
    from cirbench.console import make_console
    from cirbench.evaluation.suite import run_suite

    console = make_console(stderr=True)

    found_methods, found_benchmarks = find_card_dirs()
    methods_dir, benchmarks_dir = methods_dir or found_methods, benchmarks_dir or found_benchmarks
    report = run_suite(
        methods_dir,
        benchmarks_dir,
        settings,
        quick_gelu=quick_gelu,
        on_outcome=None if quiet else print_outcome,
        limit=limit,
        index=index[0],
        index_params=index[1],
    )
    if not quiet:
        for skip in report.skipped:
            console.print(f"[yellow]{skip}[/]", highlight=False)
        console.print(
            f"{len(report.outcomes)} results ({sum(o.reused for o in report.outcomes)} reused), "
            f"{len(report.skipped)} skipped; cards: {methods_dir}, {benchmarks_dir}; results: {settings.results_dir}",
            highlight=False,
        )
    return report.outcomes


@app.command("score")
def score_command(
    benchmark: Annotated[str, typer.Option("--benchmark", help=f"A registered benchmark: {BENCHMARKS}.")],
    rankings: Annotated[Path, typer.Option("--rankings", help="JSON: query id -> ranked ids (CIRR: server format).")],
    split: SplitOpt = None,
    root: RootOpt = None,
    subset_rankings: Annotated[Path | None, typer.Option("--subset-rankings", help="CIRR recall_subset file.")] = None,
    protocol: ProtocolOpt = None,
    allow_missing: Annotated[bool, typer.Option(help="Score absent queries as misses (count reported).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
) -> None:
    """Score a rankings file made by any code against the official annotations (no images needed)."""
    from cirbench.benchmarks import get_benchmark
    from cirbench.options import split_pairs
    from cirbench.scoring import load_rankings, score

    bench = get_benchmark(benchmark)
    data = bench.load(root, split, split_pairs(protocol))
    report = score(bench, data, load_rankings(bench, rankings, subset_rankings), allow_missing=allow_missing)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    from rich.table import Table

    from cirbench.console import make_console

    console = make_console()
    table = Table(title=f"{bench.name} {data.split}: {rankings.name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in report["metrics"].items():
        table.add_row(name, f"{value:.2f}" if isinstance(value, float) else str(value))
    console.print(table)
    if report["n_missing"]:
        console.print(f"[yellow]{report['n_missing']} queries had no ranking and were scored as misses[/]")
    for warning in report["warnings"]:
        console.print(f"[yellow]warning: {warning}[/]", highlight=False)


@data_app.command("check")
def data_check_command(
    benchmark: Annotated[str, typer.Option("--benchmark", help=f"A registered benchmark: {BENCHMARKS}.")],
    root: RootOpt = None,
    split: SplitOpt = None,
    protocol: ProtocolOpt = None,
    deep: Annotated[
        bool,
        typer.Option("--deep", help="Decode every image fully (also finds a corrupt middle; slower)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Report query/gallery/image counts and every problem; exit 1 when an image is missing or unreadable.

    Every image is opened: its header read (format, size within the pixel budget) and, for JPEG and PNG, its last
    bytes (a file cut short has no end marker); --deep decodes it fully."""
    from cirbench.evaluation.readiness import data_report
    from cirbench.options import split_pairs
    from cirbench.progress import stage_progress

    with stage_progress(f"data check {benchmark}", not as_json) as bar:
        progress = (lambda done, total: bar("images", done, total)) if bar else None
        report = data_report(benchmark, root, split, split_pairs(protocol), deep=deep, progress=progress)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        from cirbench.console import make_console

        console = make_console()
        console.print(f"[bold]{report['benchmark']} {report['split']}[/] (layout: {report['layout'] or '?'})")
        for key in ("n_queries", "gallery_size", "n_images", "n_missing", "n_unreadable"):
            if report[key] is not None:  # gallery_size: None where no one gallery is known (see data_report)
                console.print(f"  {key}: {report[key]}")
        for problem in report["problems"]:
            console.print(f"  [red]problem:[/] {problem}")
        console.print("[green]ok[/]" if report["ok"] else "[red]not ok[/]")
    if not report["ok"]:
        raise typer.Exit(1)


@cache_app.command("ls")
def cache_ls_command() -> None:
    """List gallery feature cache entries."""
    from rich.table import Table

    from cirbench.console import make_console
    from cirbench.features import list_entries
    from cirbench.paths import cache_root

    _cache_folder()
    table = Table(title=f"feature cache: {cache_root() / 'features'}")
    for column in ("key", "backbone", "preprocess", "images", "MB", "complete"):
        table.add_column(column)
    for entry in list_entries():
        table.add_row(
            entry["key"],
            str(entry.get("backbone", "?")),
            str(entry.get("preprocess", "?")),
            str(entry.get("n_images", "?")),
            f"{entry['bytes'] / 1e6:.1f}",
            "yes" if entry["complete"] else "partial",
        )
    make_console().print(table)


@cache_app.command("clear")
def cache_clear_command(
    backbone: Annotated[str | None, typer.Option(help="Only entries of this backbone id.")] = None,
) -> None:
    """Delete cached gallery features (all, or one backbone's)."""
    from cirbench.features import clear_entries

    _cache_folder()
    typer.echo(f"removed {clear_entries(backbone)} cache entries")


def _cache_folder() -> None:
    """The cache root is a folder (or not made yet): a file there would list as an empty cache, and clear nothing."""
    from cirbench.paths import cache_root

    for path in (cache_root(), cache_root() / "features"):
        if path.exists() and not path.is_dir():
            raise UsageError(
                f"the feature cache {shown(str(path))} is a file, not a folder: point CIRBENCH_CACHE at a folder, "
                "or move the file away"
            )
