"""``cirbench list``: what the registries hold, with every option as its declaration describes it."""

from __future__ import annotations

from typing import Annotated

import typer

from cirbench.commands import app
from cirbench.errors import UsageError


@app.command("list")
def list_command(
    what: Annotated[str, typer.Argument(help="methods, benchmarks, backbones or all")] = "all",
) -> None:
    """List registered methods, benchmarks and known backbones, with their options."""
    from rich.table import Table

    from cirbench.console import make_console

    if what not in ("methods", "benchmarks", "backbones", "all"):
        raise UsageError(f"list what? methods, benchmarks, backbones or all, not {what!r}")
    console = make_console()
    if what in ("methods", "all"):
        from cirbench.methods import METHODS

        table = Table("name", "consumes / gallery", "checkpoint", "options", "description", title="methods")
        for entry in METHODS.entries():
            options, need = "\n".join(o.describe() for o in entry.options) or "-", entry.needs_checkpoint
            interface = f"{entry.inputs.replace('_', ' ')} / {'own encoder' if entry.gallery == 'own' else 'backbone'}"
            table.add_row(entry.name, interface, "required" if need else "-", options, entry.description)
        console.print(table)
    if what in ("benchmarks", "all"):
        from cirbench.benchmarks import BENCHMARKS

        table = Table(title="benchmarks")
        for column in ("name", "splits", "main metric", "protocol options"):
            table.add_column(column)
        for bench in BENCHMARKS.entries():
            options = "\n".join(o.describe() for o in bench.options) or "-"
            table.add_row(bench.name, ", ".join(bench.splits), bench.main_metric, options)
        console.print(table)
    if what in ("backbones", "all"):
        from cirbench.backbone_hints import cached_open_clip
        from cirbench.backbones import BACKBONES, KNOWN_BACKBONES, RANDOM_TAG

        table = Table(title="backbones (any open_clip MODEL:TAG also works)")
        table.add_column("id")
        table.add_column("description")
        for provider in BACKBONES.entries():  # installed here first, as the errors suggest them
            table.add_row(provider.id, provider.description)
        cached = set(cached_open_clip())
        for backbone in KNOWN_BACKBONES:
            state = "weights cached here" if backbone in cached else "no weights here: --allow-download once"
            table.add_row(backbone, f"open_clip ({'random init, for tests' if RANDOM_TAG in backbone else state})")
        console.print(table)
