"""Entry point: ``cirbench`` (also ``python -m cirbench``). Commands live in ``cirbench/commands/``."""

from __future__ import annotations

import typer

from cirbench.network import offline_by_default

offline_by_default()  # before anything imports huggingface_hub: no network unless asked

import cirbench.commands.core  # noqa: E402
import cirbench.commands.demo  # noqa: E402
import cirbench.commands.doctor  # noqa: E402
import cirbench.commands.leaderboard  # noqa: E402
import cirbench.commands.lincir  # noqa: E402
import cirbench.commands.prepare  # noqa: E402
import cirbench.commands.results  # noqa: E402
import cirbench.commands.shapes  # noqa: E402
import cirbench.commands.stats  # noqa: E402
import cirbench.commands.train  # noqa: E402, F401 - each module registers its commands on the app
import cirbench.commands.verify  # noqa: E402, F401
from cirbench.commands import app  # noqa: E402


def main() -> None:
    """Run the CLI: every error ends as one line and an exit code (``cirbench.commands.boundary``). First the
    start-up check (``cirbench.doctor``: two version files read, no import): a torch/torchvision pair that cannot
    load is one line with its fix, not the traceback of the first command that imports torchvision."""
    import sys

    from cirbench.doctor import startup_problem

    problem = startup_problem(sys.argv[1:])
    if problem is not None:
        typer.secho(f"error: {problem}", err=True, fg="red")
        raise SystemExit(2)
    app()
