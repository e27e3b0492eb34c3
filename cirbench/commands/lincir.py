"""``cirbench lincir``: inspect Self-Masking Projection, pre-build mask caches, convert phi checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cirbench.commands import lincir_app
from cirbench.errors import UsageError

ModeOpt = Annotated[str, typer.Option("--mode", help="upstream (exact, substring replacement) or whole-word.")]
SpacyOpt = Annotated[str, typer.Option("--spacy-model", help="spaCy pipeline (default en_core_web_sm).")]


@lincir_app.command("mask")
def mask(
    texts: Annotated[list[str], typer.Argument(help="Caption(s) to mask.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of objects.")] = False,
    mode: ModeOpt = "upstream",
    spacy_model: SpacyOpt = "en_core_web_sm",
    seed: Annotated[int, typer.Option(help="Python random seed for the one-random-word fallback.")] = 0,
) -> None:
    """Show what SMP trains on: each caption cleaned and masked, the placeholder printed as ``$``."""
    import random

    from cirbench.lincir.masking import Masker

    masker = Masker(spacy_model, mode)
    random.seed(seed)
    results = masker(texts, rng=random)
    if as_json:
        rows = [
            {
                "caption": raw,
                "clean": r.caption,
                "keywords": r.keywords,
                "masked": r.masked_display,
                "fallback": r.fallback,
                "tokens": r.tokens,
                "masked_tokens": r.masked,
            }
            for raw, r in zip(texts, results, strict=True)
        ]
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    for r in results:
        suffix = f"    [{r.fallback}]" if r.fallback != "none" else ""
        typer.echo(f"{r.masked_display}{suffix}")


@lincir_app.command("prepare")
def prepare(
    corpus: Annotated[list[str], typer.Option("--corpus", help="Corpus spec (repeatable), as for train.")],
    mode: ModeOpt = "upstream",
    spacy_model: SpacyOpt = "en_core_web_sm",
    processes: Annotated[int, typer.Option(min=1, help="Worker processes for cleaning + spaCy + tokenization.")] = 1,
    column: Annotated[str | None, typer.Option(help="Caption column for csv/jsonl/parquet/hub corpora.")] = None,
    allow_download: Annotated[bool, typer.Option(help="Allow hub corpora.")] = False,
) -> None:
    """Build (once) the mask cache a training run will use; run it before torchrun for large corpora."""
    from cirbench.lincir.corpus import load_corpus
    from cirbench.lincir.maskcache import build_mask_cache

    data = load_corpus(corpus, column=column, allow_download=allow_download)
    cache = build_mask_cache(data, mode=mode, spacy_model=spacy_model, processes=processes, progress=True)
    meta = cache.meta
    typer.echo(
        f"{meta['captions']} captions, mode {meta['mode']}, spaCy {meta['spacy']['package']} "
        f"{meta['spacy']['version']}, fallbacks {meta['fallbacks']}: {cache.path}"
    )
    typer.echo(f"train from it anywhere (no corpus or spaCy needed there): cirbench train lincir --masks {cache.path}")


@lincir_app.command("convert")
def convert(
    source: Annotated[Path, typer.Argument(help="Run directory, .safetensors or official .pt.")],
    target: Annotated[Path, typer.Argument(help="Output: .pt (official layout) or .safetensors.")],
    backbone: Annotated[str | None, typer.Option(help="Backbone id recorded in a .safetensors output.")] = None,
) -> None:
    """Convert phi between the official ``.pt`` layout and cirbench safetensors."""
    from cirbench.commands.output_paths import check_outputs
    from cirbench.methods.lincir import resolve_checkpoint
    from cirbench.phi import load_phi, save_official, save_safetensors

    if target.suffix not in (".pt", ".safetensors"):
        raise UsageError(f"{target}: write .pt (official layout) or .safetensors")
    check_outputs({"TARGET": target})
    path = resolve_checkpoint(source)
    if path.resolve() == target.resolve():
        raise UsageError(f"TARGET {target} is the phi being converted ({path}): write the converted phi elsewhere")
    phi, metadata = load_phi(path)
    step = int(metadata.get("step", 0))
    if target.suffix == ".pt":
        save_official(phi, target, step)
    elif target.suffix == ".safetensors":
        name = backbone or metadata.get("backbone")
        if not name:
            raise UsageError("give --backbone: the official .pt does not record which backbone phi belongs to")
        save_safetensors(phi, target, name, step, json.loads(metadata.get("recipe", "{}")))
    else:
        raise UsageError(f"{target}: write .pt (official layout) or .safetensors")
    typer.echo(f"{path} -> {target}")
