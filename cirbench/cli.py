"""Entry point: ``cirbench`` (also ``python -m cirbench``). Commands live in ``cirbench/commands/``."""

from __future__ import annotations

import importlib
import sys

from cirbench.commands import app

COMMAND_MODULES = (
    "cirbench.commands.core",
    "cirbench.commands.train",
    "cirbench.commands.lincir",
    "cirbench.commands.leaderboard",
    "cirbench.commands.shapes",
)


def _register_commands() -> None:
    for module in COMMAND_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise


_register_commands()


def main() -> None:
    """Run the CLI; known user errors print one line instead of a traceback."""
    from cirbench.errors import USER_ERRORS

    try:
        app()
    except USER_ERRORS as error:
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {error}", highlight=False)
        sys.exit(2)
