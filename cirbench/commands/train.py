"""``cirbench train lincir``: train LinCIR's phi from text alone (1 process, or DDP under torchrun).

Settings resolve as: paper defaults < ``--config`` (a method card's ``backbone`` + ``train:`` section, or a plain
YAML of training options) < ``--set KEY=VALUE`` < explicit flags. ``--resume RUN`` continues a run with its saved
config (only steps/checkpoint/validation/logging settings may change).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from cirbench.commands import train_app
from cirbench.commands.threads_option import ThreadsOpt, use_threads
from cirbench.errors import UsageError, shown


def _read_config(path: Path) -> dict[str, Any]:
    """Training options from ``--config``: a method card's ``train:`` section (paths relative to the card, its
    backbone included), or a plain YAML mapping of training options (both read strictly: ``cards``, ``yaml_io``)."""
    from cirbench.cards import load_method_card, read_card_mapping

    data = read_card_mapping(path)
    if "train" in data or "method" in data:  # a method card
        if data.get("method", "lincir") != "lincir":
            raise UsageError(f"{path} is a card for method {shown(data.get('method'))}, not lincir")
        return dict(load_method_card(path).train or {}) if "train" in data else _card_backbone(data)
    return data


def _card_backbone(data: dict[str, Any]) -> dict[str, Any]:
    return {"backbone": data["backbone"]} if data.get("backbone") else {}


def _pairs(pairs: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` values, each read as strict, bounded YAML; a key given twice is an error."""
    import yaml

    from cirbench import yaml_io
    from cirbench.options import unique_pairs

    out: list[tuple[str, Any]] = []
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"expected KEY=VALUE, got {shown(pair)}")
        name = key.strip().replace("-", "_")
        try:
            out.append((name, yaml_io.load(value, f"--set {shown(pair)}")))
        except yaml.YAMLError as error:
            detail = " ".join(str(error).split())[:200]
            raise UsageError(f"--set {shown(pair)}: the value is not valid YAML ({detail})") from error
    return unique_pairs(out, "--set", error=UsageError)


def _check_layer(source: str, layer: dict[str, Any]) -> None:
    """One source of settings (``--config``, ``--set``, the flags) checked alone; its errors name the source."""
    from cirbench.errors import TrainError
    from cirbench.lincir.config import TrainConfig

    try:
        TrainConfig.from_dict(layer)
    except TrainError as error:
        if not source:
            raise
        raise TrainError(f"{source}: {error}") from None


def _log_line(out: Path, log: dict[str, Any]) -> str:
    """Where the run's log is, with its final and lowest loss (``train_meta.json`` carries the same summary)."""
    from cirbench.lincir.rundir import META_FILE

    files = [str(out / log[k]) for k in ("metrics", "loss_curve") if log.get(k)]
    loss = ""
    if log.get("final_loss") is not None:
        loss = f"loss {log['final_loss']:.4f} at step {log['final_step']} (min {log['min_loss']:.4f} at step "
        loss += f"{log['min_loss_step']}); "
    return f"{loss}log: {', '.join(files) or 'none'}; summary: {out / META_FILE}"


@train_app.command("lincir")
def train_lincir(
    backbone: Annotated[str | None, typer.Option("--backbone", "-b", help="MODEL:TAG (ViT-L-14:openai).")] = None,
    corpus: Annotated[
        list[str] | None,
        typer.Option("--corpus", help="Caption corpus: txt, csv/tsv/jsonl/parquet[#column], glob, hf:owner/name."),
    ] = None,
    masks: Annotated[
        Path | None,
        typer.Option("--masks", help="A prepared mask cache (`cirbench lincir prepare`) instead of --corpus."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Method card or YAML of training options.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Training option KEY=VALUE (repeatable).")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue this run directory.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="--out holds a run: remove it whole first (phi, checkpoints, caches).")
    ] = False,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps (paper: 20000).")] = None,
    global_batch: Annotated[int | None, typer.Option(help="Global batch (paper: 512).")] = None,
    accum: Annotated[int | None, typer.Option(help="Gradient accumulation steps.")] = None,
    lr: Annotated[float | None, typer.Option(help="AdamW learning rate (1e-4).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (upstream README: 12345).")] = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated seeds: one run each, in <out>/seed-<s> (the leaderboard shows mean ± sd of their "
            "evaluations)."
        ),
    ] = None,
    column: Annotated[str | None, typer.Option(help="Caption column for csv/jsonl/parquet/hub corpora.")] = None,
    mask_mode: Annotated[str | None, typer.Option(help="upstream (exact) or whole-word.")] = None,
    spacy_model: Annotated[str | None, typer.Option(help="spaCy pipeline (en_core_web_sm).")] = None,
    spacy_processes: Annotated[int | None, typer.Option(help="Processes for caption masking.")] = None,
    precision: Annotated[str | None, typer.Option(help="Tower precision: auto, fp32, bf16, fp16.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cuda or cpu.")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Checkpoint every N steps.")] = None,
    val_root: Annotated[Path | None, typer.Option(help="Validation benchmark data (CIRR) for model selection.")] = None,
    val_benchmark: Annotated[str | None, typer.Option(help="Validation benchmark (cirr).")] = None,
    val_every: Annotated[int | None, typer.Option(help="Validate every N steps (and at step 50).")] = None,
    truncate: Annotated[bool | None, typer.Option("--truncate/--no-truncate", help="EOT truncation.")] = None,
    target_cache: Annotated[
        bool | None, typer.Option("--target-cache/--no-target-cache", help="Cache clean-caption targets.")
    ] = None,
    causal_sdpa: Annotated[bool | None, typer.Option("--sdpa/--no-sdpa", help="Causal SDPA hint.")] = None,
    buckets: Annotated[int | None, typer.Option(help="Length-sorted chunks per batch (exact).")] = None,
    pack: Annotated[
        bool | None, typer.Option("--pack/--no-pack", help="Run the tower on real tokens only (exact; default on).")
    ] = None,
    compile_: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile the tower.")] = None,
    fused_adamw: Annotated[
        bool | None, typer.Option("--fused-adamw/--no-fused-adamw", help="Single-kernel AdamW (exact up to rounding).")
    ] = None,
    varlen_attention: Annotated[
        str | None,
        typer.Option(help="Packed attention kernel: off (padded buffer), auto, reference (CPU test), flash (CUDA)."),
    ] = None,
    cuda_graphs: Annotated[
        bool | None,
        typer.Option("--cuda-graphs/--no-cuda-graphs", help="CUDA graphs of the packed tower over bucketed shapes."),
    ] = None,
    host_sync: Annotated[
        str | None, typer.Option(help="When the host waits for the device: step, or log (log/checkpoint steps only).")
    ] = None,
    prefetch: Annotated[
        bool | None, typer.Option("--prefetch/--no-prefetch", help="Assemble the next batch in a background thread.")
    ] = None,
    allow_download: Annotated[
        bool | None, typer.Option("--allow-download/--no-allow-download", help="Allow hub corpora and weights.")
    ] = None,
    threads: ThreadsOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Train LinCIR's phi with Self-Masking Projection (exact upstream objective, fast)."""
    from cirbench.lincir.config import RESUMABLE_OVERRIDES, TrainConfig, load_run_config
    from cirbench.lincir.trainer import train

    flags = {
        "backbone": backbone,
        "corpora": list(corpus) if corpus else None,
        "masks": str(masks) if masks else None,
        "out": str(out) if out else None,
        "steps": steps,
        "global_batch": global_batch,
        "accum": accum,
        "lr": lr,
        "seed": seed,
        "column": column,
        "mask_mode": mask_mode,
        "spacy_model": spacy_model,
        "spacy_processes": spacy_processes,
        "precision": precision,
        "device": device,
        "checkpoint_every": checkpoint_every,
        "val_root": str(val_root) if val_root else None,
        "val_benchmark": val_benchmark,
        "val_every": val_every,
        "truncate": truncate,
        "target_cache": target_cache,
        "causal_sdpa": causal_sdpa,
        "buckets": buckets,
        "pack": pack,
        "compile": compile_,
        "fused_adamw": fused_adamw,
        "varlen_attention": varlen_attention,
        "cuda_graphs": cuda_graphs,
        "host_sync": host_sync,
        "prefetch": prefetch,
        "allow_download": allow_download,
        "threads": threads,
        "progress": False if quiet else None,
    }
    given = {k: v for k, v in flags.items() if v is not None}
    layers = [_read_config(config) if config else {}, _pairs(set_), given]
    for source, layer in zip((f"--config {config}", "--set", ""), layers, strict=True):
        _check_layer(source, layer)  # each source is valid on its own: a later one never hides a bad earlier value
    if resume is not None:
        if given.get("out") is not None and Path(given["out"]) != Path(resume):  # --out was ignored silently
            raise UsageError(f"--resume {resume} continues that run in place: leave out --out {given['out']}")
        base = load_run_config(resume).to_dict()
        changes = {**layers[0], **layers[1], **layers[2]}
        changes.pop("out", None)
        fixed = {k for k, v in changes.items() if k not in RESUMABLE_OVERRIDES and base.get(k) != v}
        if fixed:
            raise UsageError(f"--resume cannot change {', '.join(sorted(fixed))} (they change what a step computes)")
        cfg = TrainConfig.from_dict({**base, **changes, "out": str(resume)})
    else:
        merged: dict[str, Any] = {**layers[0], **layers[1], **layers[2]}
        cfg = TrainConfig.from_dict(merged)
        if not cfg.corpora and not cfg.masks:
            raise UsageError(
                "no corpus: pass --corpus FILE (repeatable), --masks DIR (from `cirbench lincir prepare`) "
                "or a --config card with train.corpora"
            )
    require_train_extra(cfg)
    # The one thread rule (cirbench.threads): a value from --config/--set/--threads, else chosen now (a resumed run
    # chooses again); printed, and recorded in config.json and train_meta.json.
    merged_threads = {**layers[0], **layers[1], **layers[2]}.get("threads")
    cfg = dataclasses.replace(cfg, threads=use_threads(merged_threads).threads)
    if seeds is not None:
        from cirbench.commands.seeds import parse_seeds

        if resume is not None or seed is not None:
            raise UsageError("--seeds trains one run per seed: leave out --seed and --resume")
        for one in parse_seeds(seeds):
            folder = Path(cfg.out) / f"seed-{one}"
            typer.echo(f"seed {one}: {folder}")
            _report(
                train(TrainConfig.from_dict({**cfg.to_dict(), "seed": one, "out": str(folder)}), overwrite=overwrite)
            )
        return
    _report(train(cfg, resume=resume is not None, overwrite=overwrite))


def require_train_extra(cfg: Any) -> None:
    """Training from captions needs spaCy (masking) and datasets (corpus readers), which inference users do not
    install: their absence is one line naming the extra, before anything loads. A prepared mask cache needs neither."""
    import importlib.util

    from cirbench.doctor import TRAIN_EXTRA_MODULES

    if cfg.masks and not cfg.corpora:
        return
    missing = [name for name in TRAIN_EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(
            f"training LinCIR from captions needs {' and '.join(missing)} (cirbench's `train` extra): "
            "pip install 'cirbench[train]'"
        )


def _report(result: Any) -> None:
    """The run's status line and where its log is; an interrupted run exits 130."""
    cfg_steps = result.meta.get("target_steps", result.step) if result.meta else result.step
    if result.meta:
        meta = result.meta
        rate = meta.get("samples_per_s")
        typer.echo(
            f"{result.status}: step {result.step}/{cfg_steps} in {meta['wall_time_s']:.1f}s "
            f"({rate} samples/s on {meta['device_count']}x {meta['device_type']}); "
            f"checkpoint {result.out / meta['checkpoint']}"
        )
        typer.echo(_log_line(result.out, meta.get("log") or {}))
    if result.status == "interrupted":
        raise typer.Exit(code=130)
