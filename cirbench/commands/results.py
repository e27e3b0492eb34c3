"""``cirbench results migrate``: bring result files of an older schema to the current one (sealed with digests)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cirbench.commands import results_app


@results_app.command("migrate")
def migrate_command(
    results_dir: Annotated[Path, typer.Option("--results-dir", help="Folder holding runs/.")] = Path("results"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would change.")] = False,
) -> None:
    """Seal schema-2 results in place (add their digests) and rewrite schema-1 results (cirbench 0.1) as schema 3,
    each under its new run key (rankings moved along)."""
    from cirbench.errors import UsageError, shown
    from cirbench.results_migrate import migrate

    if not results_dir.is_dir():  # else "0 result files migrated", as if there were nothing to do
        what = "is a file" if results_dir.exists() else "does not exist"
        raise UsageError(f"--results-dir {shown(str(results_dir))} {what}: give the folder that holds runs/")
    done = migrate(results_dir, dry_run=dry_run)
    for item in done:
        if item.sealed_only:
            typer.echo(f"{'would seal' if dry_run else 'sealed'} {item.old}")
        else:
            typer.echo(f"{'would migrate' if dry_run else 'migrated'} {item.old} -> {item.new.name}")
    typer.echo(f"{len(done)} result file(s) {'to migrate' if dry_run else 'migrated'} under {results_dir / 'runs'}")
