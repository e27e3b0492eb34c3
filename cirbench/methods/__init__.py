"""The method registry: every module of this folder and the ``cirbench.methods`` entry points, loaded on first lookup.

A method module registers a ``MethodEntry`` with ``METHODS.register(entry)``; dropping the module in this folder is
all it takes (no list to edit). A package adds one through an entry point in the ``cirbench.methods`` group
pointing at the entry (or at a function returning it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cirbench.errors import MethodError, RegistryError
from cirbench.methods.base import Method, MethodEntry
from cirbench.options import check_declared_options
from cirbench.registry import Registry


def _adapt(obj: Any) -> MethodEntry:
    if callable(obj) and not isinstance(obj, MethodEntry):
        obj = obj()
    if not isinstance(obj, MethodEntry):
        raise RegistryError(f"{obj!r} is not a cirbench.methods.base.MethodEntry")
    check_declared_options(obj.options, f"method {obj.name!r}")
    return obj


METHODS: Registry[MethodEntry] = Registry(
    "method", adapt=_adapt, name_of=lambda entry: entry.name, builtin_packages=("cirbench.methods",)
)


def register_method(entry: MethodEntry, *, replace: bool = False) -> MethodEntry:
    return METHODS.register(entry, replace=replace)


def get_method_entry(name: str) -> MethodEntry:
    return METHODS.get(name)


def list_methods() -> list[MethodEntry]:
    return METHODS.entries()


def build_method(
    name: str, backbone: Any, checkpoint: Path | None = None, options: Mapping[str, Any] | None = None
) -> Method:
    """Build a registered method; options are validated (typed, unknown keys refused) first."""
    entry = METHODS.get(name)
    parsed = entry.parse_options(options)
    if entry.needs_checkpoint and checkpoint is None:
        raise MethodError(f"method {name!r} needs --checkpoint ({entry.checkpoint_hint})")
    located = entry.locate_checkpoint(Path(checkpoint)) if checkpoint is not None else None
    return entry.factory(backbone, located, parsed)


__all__ = ["METHODS", "MethodEntry", "build_method", "get_method_entry", "list_methods", "register_method"]
