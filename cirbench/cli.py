"""Entry point: ``cirbench`` (also ``python -m cirbench``). Commands live in ``cirbench/commands/``."""

from __future__ import annotations

from cirbench.network import offline_by_default

offline_by_default()  # before anything imports huggingface_hub: no network unless asked

import cirbench.commands.core  # noqa: E402
import cirbench.commands.demo  # noqa: E402
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
    """Run the CLI: every error ends as one line and an exit code (``cirbench.commands.boundary``)."""
    app()
