"""Method registry: in-tree methods, entry-point plugins (group ``cirbench.methods``) and ``--import`` modules."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from cirbench.methods.base import Method, MethodEntry, MethodError

METHODS: dict[str, MethodEntry] = {}

# Modules that register methods when imported; missing ones are skipped so the core works on its own.
_BUILTIN_MODULES = (
    "cirbench.methods.baselines",
    "cirbench.methods.lincir",
    "cirbench.methods.pic2word",
    "cirbench.methods.searle",
)
_loaded = False


def register_method(entry: MethodEntry) -> MethodEntry:
    METHODS[entry.name] = entry
    return entry


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
    for ep in entry_points(group="cirbench.methods"):
        obj = ep.load()
        if isinstance(obj, MethodEntry):
            register_method(obj)


def list_methods() -> list[MethodEntry]:
    _load_all()
    return [METHODS[name] for name in sorted(METHODS)]


def get_method_entry(name: str) -> MethodEntry:
    _load_all()
    if name not in METHODS:
        close = difflib.get_close_matches(name, METHODS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(METHODS))}"
        raise MethodError(f"unknown method {name!r}{hint}")
    return METHODS[name]


def build_method(
    name: str, backbone: Any, checkpoint: Path | None = None, options: Mapping[str, Any] | None = None
) -> Method:
    entry = get_method_entry(name)
    if entry.needs_checkpoint and checkpoint is None:
        raise MethodError(f"method {name!r} needs --checkpoint (see its card in methods/)")
    return entry.factory(backbone, checkpoint, dict(options or {}))
