"""Entry point: ``cirbench`` (also ``python -m cirbench``). Commands live in ``cirbench/commands/``."""

from __future__ import annotations

import cirbench.commands.core
import cirbench.commands.demo
import cirbench.commands.leaderboard
import cirbench.commands.lincir
import cirbench.commands.results
import cirbench.commands.shapes
import cirbench.commands.train  # noqa: F401 - each module registers its commands on the app
from cirbench.commands import app


def main() -> None:
    """Run the CLI (user errors print one line and exit 2; see ``cirbench.commands``)."""
    app()
