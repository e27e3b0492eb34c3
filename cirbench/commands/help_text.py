"""Help generated from the code at the moment it is shown, so it cannot drift from the registries.

- ``{benchmarks}``, ``{methods}``, ``{backbones}``, ``{indexes}``, ``{index_params}`` in an option's help become
  the registered names (plugins and declared index parameters included) when that command's help is rendered,
  never before: ``cirbench --help`` imports no registry (a method module imports torch, so ``eval -h``, which names
  the methods, costs a torch import; ``score -h`` does not).
- Typer 0.29 prints every option's Python type in its help, so a flag read ``--all <bool>`` as if it took a value;
  a flag (``--help``, ``--version``, ``--overwrite/--no-overwrite``) shows no type.
- Every ``--results-dir`` declared with the plain default ``results`` defaults to the one results location
  (``paths.find_results_dir``), given to Click as the context's ``default_map``: each command's help shows the folder
  it will use, and no command can find another one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCHMARKS = "{benchmarks}"
METHODS = "{methods}"
BACKBONES = "{backbones}"
INDEXES = "{indexes}"
INDEX_PARAMS = "{index_params}"


def _benchmark_names() -> str:
    from cirbench.benchmarks import BENCHMARKS as REGISTRY

    return ", ".join(REGISTRY.names())


def _method_names() -> str:
    from cirbench.methods import METHODS as REGISTRY

    return ", ".join(REGISTRY.names())


def _backbone_names() -> str:
    from cirbench.backbones import BACKBONES as REGISTRY

    return ", ".join(REGISTRY.names())


def _index_names() -> str:
    from cirbench.search import INDEX_OPTIONS

    return ", ".join(INDEX_OPTIONS)


def _index_params() -> str:
    from cirbench.search import INDEX_OPTIONS

    return "; ".join(f"{name}: {', '.join(o.name for o in opts)}" for name, opts in INDEX_OPTIONS.items() if opts)


NAMES: dict[str, Callable[[], str]] = {
    BENCHMARKS: _benchmark_names,
    METHODS: _method_names,
    BACKBONES: _backbone_names,
    INDEXES: _index_names,
    INDEX_PARAMS: _index_params,
}


def fill_registry_names(command: Any) -> None:
    """Replace the markers in ``command``'s option help by the registered names (each registry read only when a
    marker asks for it)."""
    for param in getattr(command, "params", ()):
        text = getattr(param, "help", None)
        for marker, names in NAMES.items():
            if text and marker in text:
                text = text.replace(marker, names())
                param.help = text


def display_type_without_flags(display: Callable[..., str | None]) -> Callable[..., str | None]:
    """Typer's ``TyperOption.display_type_rich``, with no type shown for a flag (it takes no value)."""

    def shown(self: Any, ctx: Any) -> str | None:
        return None if getattr(self, "is_flag", False) else display(self, ctx)

    return shown


def results_default_map(group: Any, location: Path) -> dict[str, Any]:
    """Click ``default_map`` giving every command whose ``--results-dir`` defaults to ``results`` the results
    ``location``; nested groups nest."""
    from cirbench.paths import DEFAULT_RESULTS

    defaults: dict[str, Any] = {}
    for name, command in getattr(group, "commands", {}).items():
        if getattr(command, "commands", None):
            nested = results_default_map(command, location)
            if nested:
                defaults[name] = nested
        elif any(p.name == "results_dir" and p.default == DEFAULT_RESULTS for p in command.params):
            defaults[name] = {"results_dir": location}
    return defaults
