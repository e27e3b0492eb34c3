"""``--threads`` for every command that runs torch: one declaration, the one rule (``cirbench.threads``), one line.

Why here: the option's help shows the rule, so ``-h`` cannot drift from what the command does, and every command
prints its choice the same way: one line when its work starts (only rank 0 under torchrun), never before a check
that fails, so a failing command still ends in one line.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cirbench import threads as thread_rule
from cirbench import torchrun

ThreadsOpt = Annotated[int | None, typer.Option("--threads", help=thread_rule.HELP)]


def use_threads(requested: int | None, say: bool = True) -> thread_rule.ThreadChoice:
    """Set this process's torch threads by the rule; when ``say`` (and rank 0), the choice is printed on stderr as
    the command's work starts (``thread_rule.announce``). Returns it."""
    from cirbench.options import require_bounds

    if requested is not None:
        require_bounds("--threads", requested, minimum=1)
    choice = thread_rule.use(requested)
    me = torchrun.from_env()
    if say and (me is None or me.main):
        thread_rule.announce(choice)  # forgotten when the command ends (``commands._UserErrorGroup``)
    return choice
