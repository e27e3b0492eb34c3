"""Entry point: ``cirbench`` (also ``python -m cirbench``). Commands live in ``cirbench/commands/``."""

from __future__ import annotations

import importlib

from cirbench.commands import app

COMMAND_MODULES = (
    "cirbench.commands.core",
    "cirbench.commands.train",
    "cirbench.commands.lincir",
    "cirbench.commands.leaderboard",
    "cirbench.commands.shapes",
    "cirbench.commands.demo",
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
    """Run the CLI (user errors print one line and exit 2; see ``cirbench.commands``)."""
    app()
