"""Help is generated from the registries and the option declarations, so it cannot drift from ``cirbench list``."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from cirbench.backbones import BACKBONES
from cirbench.benchmarks import BENCHMARKS
from cirbench.cli import app
from cirbench.methods import METHODS
from cirbench.methods.base import BATCH_SIZE


def flat(*args: str) -> str:
    """A command's output with the help panels' borders gone and every run of whitespace one space."""
    out = CliRunner().invoke(app, list(args))
    assert out.exit_code == 0, out.output
    return " ".join(out.output.replace("│", " ").split())


def test_option_help_names_every_registered_benchmark_method_and_backbone():
    benchmarks, methods = ", ".join(BENCHMARKS.names()), ", ".join(METHODS.names())
    assert len(BENCHMARKS.names()) >= 11
    eval_help = flat("eval", "-h")
    assert f"A registered benchmark: {benchmarks}." in eval_help
    assert f"A registered method: {methods} (options" in eval_help
    assert f"A registered backbone ({', '.join(BACKBONES.names())})" in eval_help
    for command in (["score"], ["data", "check"]):
        assert f"A registered benchmark: {benchmarks}." in flat(*command, "-h"), command


def listed_options(table: str, columns: int) -> dict[str, list[str]]:
    """name -> the option lines of a ``cirbench list`` table with ``columns`` columns (options: the 4th)."""
    options: dict[str, list[str]] = {}
    name = ""
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) != columns:
            continue
        name = cells[0] or name
        options.setdefault(name, [])
        if cells[3] not in ("", "-"):
            options[name].append(cells[3])
    return options


def test_list_shows_every_declared_option_as_its_declaration_describes_it():
    methods = CliRunner().invoke(app, ["list", "methods"]).output
    assert listed_options(methods, 5) == {e.name: [o.describe() for o in e.options] for e in METHODS.entries()}
    benchmarks = CliRunner().invoke(app, ["list", "benchmarks"]).output
    assert listed_options(benchmarks, 4) == {b.name: [o.describe() for o in b.options] for b in BENCHMARKS.entries()}
    backbones = flat("list", "backbones")
    assert all(f" {provider.id} {provider.description} " in backbones for provider in BACKBONES.entries())


def test_flags_show_no_type_and_values_show_theirs():
    root, eval_help = flat("-h"), flat("eval", "-h")
    assert "<bool>" not in root and "<bool>" not in eval_help
    assert "--version Print the version and exit." in root and "--help -h Show this message and exit." in root
    assert "--all Every method card" in eval_help and "--overwrite --no-overwrite Recompute" in eval_help
    assert "--batch-size <int> Gallery images per forward pass" in eval_help  # a value keeps its type


def test_the_two_batch_sizes_say_which_is_which():
    eval_help = flat("eval", "-h")
    assert "Not the method option -o batch_size, which is texts per forward pass" in eval_help
    assert "[default: 64]" in eval_help.split("--batch-size", 1)[1].split("--workers", 1)[0]
    assert BATCH_SIZE.default == 256 and BATCH_SIZE.help.startswith("texts per forward pass")
    assert "batch_size: int (default 256)" in flat("list", "methods")


def test_results_group_says_what_it_does():
    assert "results Migrate stored results to the current schema." in flat("-h")
    assert "Migrate stored results to the current schema." in flat("results", "-h")


def test_root_help_imports_no_registry():
    """``cirbench --help`` stays fast: the registries (a method module imports torch) load only for a command's
    own help that names them."""
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom cirbench.cli import app\n"
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
        "print(sorted(m for m in ('torch', 'cirbench.methods', 'cirbench.benchmarks') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr[-2000:]
