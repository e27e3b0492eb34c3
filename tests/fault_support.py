"""What every fault test needs: run the CLI in-process and assert a one-line error (no traceback, exit 2)."""

from __future__ import annotations

from typer.testing import CliRunner

from cirbench.cli import app

runner = CliRunner()


def run(*args):
    """``cirbench ARGS`` in this process (its output, exit code and any exception)."""
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(out, *fragments: str, code: int = 2) -> None:
    """The command failed with ``code``, printed exactly one line, no traceback, and the line holds ``fragments``."""
    assert out.exit_code == code, out.output
    text = out.output.strip()
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    for fragment in fragments:
        assert fragment in text, (fragment, text)
