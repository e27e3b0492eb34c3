"""The Typer apps every command module registers on; ``cirbench.cli`` imports the modules.

Command modules keep heavy imports (torch, open_clip) inside command bodies so ``cirbench --help`` is fast; help
that names registered things is filled in when shown (``commands.help_text``), as is the one results location. Every
error raised below the CLI is printed here as one line (``error: ...``): user and OS errors exit 2, the rest as
``commands.boundary`` says.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

CONTEXT = {"help_option_names": ["-h", "--help"]}  # inherited by every subcommand


@contextlib.contextmanager
def _help_rendering() -> Iterator[None]:
    """Typer draws help with rich at 80 columns when stdout is not a terminal: give it room. Its usage errors (an
    unknown flag, a value of the wrong type, a missing option) become one line like every other error, instead of
    a boxed panel with the usage above it. Help names the registered things when shown, and flags show no type
    (``commands.help_text``)."""
    from typer import rich_utils
    from typer.core import TyperOption

    from cirbench.commands.help_text import display_type_without_flags, fill_registry_names
    from cirbench.console import HELP_WIDTH, is_terminal

    before, render, helps = rich_utils.MAX_WIDTH, rich_utils.rich_format_error, rich_utils.rich_format_help
    display = TyperOption.display_type_rich
    if before is None and not is_terminal():
        rich_utils.MAX_WIDTH = HELP_WIDTH
    rich_utils.rich_format_error = usage_error_line

    def help_with_names(*, obj: Any, **kwargs: Any) -> Any:  # the registries' names, only when this help is shown
        fill_registry_names(obj)
        return helps(obj=obj, **kwargs)

    rich_utils.rich_format_help = help_with_names
    TyperOption.display_type_rich = display_type_without_flags(display)  # type: ignore[method-assign]
    try:
        yield
    finally:
        rich_utils.MAX_WIDTH, rich_utils.rich_format_error, rich_utils.rich_format_help = before, render, helps
        TyperOption.display_type_rich = display  # type: ignore[method-assign]


def usage_error_line(error: Any) -> None:
    """``error: <click's message>; see `cirbench CMD -h``` on one line (a bare ``cirbench`` still shows help)."""
    if type(error).__name__ == "NoArgsIsHelpError":
        return
    ctx = getattr(error, "ctx", None)
    hint = f"; see `{ctx.command_path} -h`" if ctx is not None else ""
    message = " ".join(str(error.format_message()).split()).rstrip(".")
    typer.secho(f"error: {message}{hint}", err=True, fg="red")


class _UserErrorGroup(TyperGroup):
    """Every error that leaves a command is one line and an exit code (``commands.boundary``), no traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        from cirbench.commands.boundary import sigterm_raises
        from cirbench.commands.help_text import results_default_map
        from cirbench.paths import find_results_dir

        kwargs.setdefault("default_map", results_default_map(self, find_results_dir()))  # one results location
        with _help_rendering(), sigterm_raises():
            return super().main(*args, **kwargs)

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        from cirbench.commands.boundary import ending, say, show_traceback
        from cirbench.threads import forget

        ctx.call_on_close(forget)  # a thread choice never said (nothing was computed) ends with the command
        try:
            return super().invoke(ctx)
        except BaseException as error:  # noqa: BLE001 - the one boundary: everything ends here as one line
            end = ending(error, ctx.invoked_subcommand or ctx.info_name or "")
            if end is None:
                raise
            if show_traceback(error):
                raise
            say(end)
            raise typer.Exit(end.code) from None


app = typer.Typer(
    name="cirbench",
    cls=_UserErrorGroup,
    help="Benchmark harness and leaderboard for zero-shot composed image retrieval.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings=CONTEXT,
)


def _print_version(value: bool) -> None:
    if value:
        from cirbench import __version__

        typer.echo(f"cirbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Benchmark harness and leaderboard for zero-shot composed image retrieval."""


train_app = typer.Typer(help="Train methods (LinCIR's phi from text alone).", no_args_is_help=True)
lincir_app = typer.Typer(help="Inspect LinCIR's Self-Masking Projection.", no_args_is_help=True)
cache_app = typer.Typer(help="Inspect or clear the gallery feature cache.", no_args_is_help=True)
data_app = typer.Typer(help="Check benchmark data; make query sets that are not released.", no_args_is_help=True)
shapes_app = typer.Typer(help="The synthetic shapes world and its tiny CLIP.", no_args_is_help=True)
results_app = typer.Typer(help="Migrate stored results to the current schema.", no_args_is_help=True)

app.add_typer(train_app, name="train")
app.add_typer(lincir_app, name="lincir")
app.add_typer(cache_app, name="cache")
app.add_typer(data_app, name="data")
app.add_typer(shapes_app, name="shapes")
app.add_typer(results_app, name="results")
