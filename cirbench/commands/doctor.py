"""``cirbench doctor``: is this install complete? One row per check, each problem with the command that fixes it."""

from __future__ import annotations

import typer

from cirbench.commands import app

STATUS = {True: "[green]ok[/]", False: "[red]problem[/]", None: "[yellow]not installed[/]"}


@app.command("doctor")
def doctor_command() -> None:
    """Check the install: torch + torchvision built for each other, the core packages, each optional extra and
    LinCIR's spaCy model. Exit 0 when nothing is wrong (an optional extra may be absent), 1 otherwise."""
    from rich.markup import escape
    from rich.table import Table

    from cirbench.console import make_console
    from cirbench.doctor import run_checks

    checks = run_checks()
    table = Table(box=None, pad_edge=False)
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in checks:
        fix = check.fix and f"[bold]{escape(check.fix)}[/]"  # `cirbench[scale]` is text, not markup
        table.add_row(escape(check.name), STATUS[check.ok], escape(check.detail), fix)
    console = make_console()
    console.print(table, highlight=False)
    problems = [check for check in checks if check.ok is False]
    console.print(f"{len(problems)} problem(s)" if problems else "no problems", highlight=False)
    if problems:
        raise typer.Exit(1)
