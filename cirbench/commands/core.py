"""Core commands: ``list``, ``eval`` (one run or ``--all``), ``score``, ``data check``, ``cache ls/clear``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cirbench.commands import CLIError, app, cache_app, data_app

MethodOpt = Annotated[str | None, typer.Option("--method", "-m", help="Method name (see `cirbench list`).")]
BackboneOpt = Annotated[
    str | None,
    typer.Option("--backbone", "-b", help="MODEL:TAG, MODEL:/path/to/ckpt or cirbench-tiny:random."),
]
BenchmarkOpt = Annotated[str | None, typer.Option("--benchmark", help="circo, cirr, fashioniq, genecis, shapes.")]
SplitOpt = Annotated[str | None, typer.Option("--split", help="Benchmark split (default: its first split).")]
RootOpt = Annotated[Path | None, typer.Option("--root", help="Dataset folder (any supported layout).")]
SetOpt = Annotated[list[str] | None, typer.Option("--option", "-o", help="Method option KEY=VALUE (repeatable).")]
ProtocolOpt = Annotated[
    list[str] | None,
    typer.Option("--protocol", "-p", help="Benchmark protocol option KEY=VALUE (repeatable)."),
]
ResultsOpt = Annotated[Path, typer.Option("--results-dir", help="Where result files go.")]


def parse_pairs(pairs: list[str] | None, comma_lists: bool = False) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict; values are read as YAML scalars/lists (``true``, ``3``, ``[a, b]``).

    With ``comma_lists`` (protocol options), ``a,b`` is the list ``[a, b]`` too; method options keep commas,
    since prompts contain them.
    """
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CLIError(f"expected KEY=VALUE, got {pair!r}")
        parsed = yaml.safe_load(value)
        if comma_lists and isinstance(parsed, str) and "," in parsed:
            parsed = [item.strip() for item in parsed.split(",") if item.strip()]
        out[key.strip()] = parsed
    return out


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@app.command("list")
def list_command(
    what: Annotated[str, typer.Argument(help="methods, benchmarks, backbones or all")] = "all",
) -> None:
    """List registered methods, benchmarks and known backbones."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if what in ("methods", "all"):
        from cirbench.methods import list_methods

        table = Table(title="methods")
        for column in ("name", "checkpoint", "description"):
            table.add_column(column)
        for entry in list_methods():
            table.add_row(entry.name, "required" if entry.needs_checkpoint else "-", entry.description)
        console.print(table)
    if what in ("benchmarks", "all"):
        from cirbench.benchmarks import BENCHMARKS, _load_plugins

        _load_plugins()
        table = Table(title="benchmarks")
        for column in ("name", "splits", "main metric", "protocol"):
            table.add_column(column)
        for name in sorted(BENCHMARKS):
            bench = BENCHMARKS[name]
            table.add_row(name, ", ".join(bench.splits), bench.main_metric, bench.protocol_version)
        console.print(table)
    if what in ("backbones", "all"):
        from cirbench.backbones import BACKBONE_LOADERS, KNOWN_BACKBONES, register_builtin_backbones

        register_builtin_backbones()
        table = Table(title="backbones (any open_clip MODEL:TAG also works)")
        table.add_column("id")
        for backbone in (*KNOWN_BACKBONES, *sorted(BACKBONE_LOADERS)):
            table.add_row(backbone)
        console.print(table)


@app.command("eval")
def eval_command(
    method: MethodOpt = None,
    backbone: BackboneOpt = None,
    benchmark: BenchmarkOpt = None,
    split: SplitOpt = None,
    root: RootOpt = None,
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", "-c", help="Method checkpoint.")] = None,
    option: SetOpt = None,
    protocol: ProtocolOpt = None,
    all_cards: Annotated[bool, typer.Option("--all", help="Every method card x every benchmark card.")] = False,
    methods_dir: Annotated[Path, typer.Option(help="Method cards for --all.")] = Path("methods"),
    benchmarks_dir: Annotated[Path, typer.Option(help="Benchmark cards for --all.")] = Path("benchmarks"),
    results_dir: ResultsOpt = Path("results"),
    overwrite: Annotated[bool, typer.Option(help="Recompute even if the result exists.")] = False,
    skip_missing: Annotated[
        bool, typer.Option(help="Evaluate without missing images; the dropped count goes in the result.")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Image/text batch size (not part of the run key).")] = 64,
    workers: Annotated[int, typer.Option(help="Image decoding workers.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the feature cache.")] = False,
    allow_download: Annotated[bool, typer.Option(help="Allow downloading pretrained weights.")] = False,
    quick_gelu: Annotated[
        bool | None,
        typer.Option(
            "--quick-gelu/--no-quick-gelu",
            help="Activation of a local MODEL:/path checkpoint (OpenAI-derived weights use QuickGELU).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result(s) as JSON.")] = False,
) -> None:
    """Evaluate a method on a benchmark split (or every card with --all) and write result files."""
    from cirbench.runner import EvalRequest, run_all_cards, run_request

    settings = {
        "results_dir": results_dir,
        "overwrite": overwrite,
        "skip_missing": skip_missing,
        "batch_size": batch_size,
        "num_workers": workers,
        "device": pick_device(device),
        "use_cache": not no_cache,
        "allow_download": allow_download,
        "quick_gelu": quick_gelu,
    }
    if all_cards:
        results = run_all_cards(methods_dir, benchmarks_dir, **settings)
    else:
        if not (method and benchmark):
            raise CLIError("give --method and --benchmark (and --backbone, --root), or --all")
        request = EvalRequest(
            method=method,
            backbone=backbone,
            benchmark=benchmark,
            split=split,
            root=root,
            checkpoint=checkpoint,
            method_options=parse_pairs(option),
            protocol_options=parse_pairs(protocol, comma_lists=True),
        )
        results = [run_request(request, **settings)]
    if as_json:
        typer.echo(json.dumps([{k: v for k, v in r.items() if k != "env"} for r in results], indent=2))


@app.command("score")
def score_command(
    benchmark: Annotated[str, typer.Option("--benchmark", help="circo, cirr, fashioniq, genecis.")],
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
    from cirbench.runner import load_split
    from cirbench.scoring import load_rankings, score

    bench = get_benchmark(benchmark)
    data = load_split(bench, root, split or bench.splits[0], parse_pairs(protocol, comma_lists=True))
    try:
        report = score(bench, data, load_rankings(bench, rankings, subset_rankings), allow_missing=allow_missing)
    except ValueError as error:
        raise CLIError(str(error)) from error
    metrics = report["metrics"]
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{benchmark} {data.split}: {rankings.name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
    if report["n_missing"]:
        Console().print(f"[yellow]{report['n_missing']} queries had no ranking and were scored as misses[/]")


@data_app.command("check")
def data_check_command(
    benchmark: Annotated[str, typer.Option("--benchmark", help="circo, cirr, fashioniq, genecis, shapes.")],
    root: RootOpt = None,
    split: SplitOpt = None,
    protocol: ProtocolOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Report query/gallery/image counts and every problem; exit 1 when anything is missing."""
    from cirbench.runner import data_report

    report = data_report(benchmark, root, split, parse_pairs(protocol, comma_lists=True))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        from rich.console import Console

        console = Console()
        console.print(f"[bold]{report['benchmark']} {report['split']}[/] (layout: {report['layout'] or '?'})")
        for key in ("n_queries", "gallery_size", "n_images", "n_missing"):
            console.print(f"  {key}: {report[key]}")
        for problem in report["problems"]:
            console.print(f"  [red]problem:[/] {problem}")
        console.print("[green]ok[/]" if report["ok"] else "[red]not ok[/]")
    if not report["ok"]:
        raise typer.Exit(1)


@cache_app.command("ls")
def cache_ls_command() -> None:
    """List gallery feature cache entries."""
    from rich.console import Console
    from rich.table import Table

    from cirbench.features import cache_root, list_entries

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
    Console().print(table)


@cache_app.command("clear")
def cache_clear_command(
    backbone: Annotated[str | None, typer.Option(help="Only entries of this backbone id.")] = None,
) -> None:
    """Delete cached gallery features (all, or one backbone's)."""
    from cirbench.features import clear_entries

    typer.echo(f"removed {clear_entries(backbone)} cache entries")
