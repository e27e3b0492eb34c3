"""One registry type for benchmarks, methods and backbones: typed entries, clash checks, entry-point plugins.

Built-in modules register their entries when imported. The registry finds them itself: every public module of
its built-in packages (``cirbench.methods``, ``cirbench.benchmarks``: a new module there is picked up with no list
to edit; one that registers nothing is fine) plus any named module, then the packages' entry points (group
``cirbench.<kind>s``), all imported lazily on the first lookup, so the core imports none of them before. A module
must therefore import without its optional dependencies (import them where they are used). A broken plugin never
breaks cirbench: it is reported as one warning line and skipped (a broken built-in module is a bug and raises).

Registering a second, different object under a taken name is an error (``replace=True`` overrides on purpose);
registering the same definition again (a module imported twice) is a no-op.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import pkgutil
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from cirbench.errors import RegistryError, UnknownNameError

T = TypeVar("T")
log = logging.getLogger("cirbench")


def definition(obj: Any) -> str:
    """Where an entry was defined (module and qualified name of its class, or of its ``factory``)."""
    target = getattr(obj, "factory", None) or (obj if isinstance(obj, type) else type(obj))
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"


class Registry(Generic[T]):
    """Named entries of one kind.

    ``adapt(obj)`` turns what a plugin provides (a class, a factory, an entry) into an entry and checks it;
    ``name_of(entry)`` reads the name an entry registers under.
    """

    def __init__(
        self,
        kind: str,
        *,
        adapt: Callable[[Any], T],
        name_of: Callable[[T], str],
        builtin_modules: Sequence[str] = (),
        builtin_packages: Sequence[str] = (),
        normalise: Callable[[str], str] = str.strip,
    ) -> None:
        self.kind = kind
        self.group = f"cirbench.{kind}s"
        self._adapt = adapt
        self._name_of = name_of
        self._builtin_modules = tuple(builtin_modules)
        self._builtin_packages = tuple(builtin_packages)
        self._normalise = normalise
        self._entries: dict[str, T] = {}
        self._loaded = False
        self.problems: list[str] = []

    # --- registration ----------------------------------------------------------------------------------------
    def register(self, obj: Any, *, replace: bool = False) -> Any:
        """Register ``obj`` (adapted to an entry) under its name; returns ``obj`` so it works as a decorator."""
        entry = self._adapt(obj)
        name = self._normalise(self._name_of(entry))
        old = self._entries.get(name)
        if old is not None and not replace and definition(old) != definition(entry):
            raise RegistryError(
                f"{self.kind} {name!r} is already registered by {definition(old)}; "
                f"{definition(entry)} cannot take the name (pass replace=True to override on purpose)"
            )
        if old is None or replace:
            self._entries[name] = entry
        return obj

    def unregister(self, name: str) -> None:
        self._entries.pop(self._normalise(name), None)

    # --- lookup ----------------------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        key = self._normalise(name)
        if key not in self._entries:
            self.load_plugins()
        if key not in self._entries:
            close = difflib.get_close_matches(key, list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint} Known: {', '.join(self.names())}")
        return self._entries[key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        self.load_plugins()
        return self._normalise(name) in self._entries

    def names(self) -> list[str]:
        self.load_plugins()
        return sorted(self._entries)

    def entries(self) -> list[T]:
        return [self._entries[name] for name in self.names()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    # --- plugins ---------------------------------------------------------------------------------------------
    def builtin_modules(self) -> list[str]:
        """The built-in modules, by name: the named ones, then every public module (not ``_private``) found in the
        built-in packages' folders, sorted."""
        found = list(self._builtin_modules)
        for package in self._builtin_packages:
            path = importlib.import_module(package).__path__
            found += sorted(f"{package}.{info.name}" for info in pkgutil.iter_modules(path) if info.name[:1] != "_")
        return found

    def load_plugins(self) -> None:
        """Import the built-in modules (a failure there is a bug and raises) and the entry points once (a broken
        plugin is one warning line and is skipped)."""
        if self._loaded:
            return
        self._loaded = True
        try:
            for module in self.builtin_modules():
                importlib.import_module(module)
        except BaseException:
            self._loaded = False  # the next lookup raises the same bug again instead of a partial registry
            raise
        for point in entry_points(group=self.group):
            try:
                self.register(point.load())
            except Exception as error:  # noqa: BLE001
                self._warn(f"entry point {point.name!r} ({point.value})", error)

    def reload_plugins(self) -> None:
        """Look at the entry points again (after installing a plugin in a running process, or in tests)."""
        self._loaded = False
        self.problems.clear()
        self.load_plugins()

    def _warn(self, what: str, error: BaseException) -> None:
        message = f"cirbench: skipped the {self.kind} plugin {what}: {type(error).__name__}: {error}"
        message = " ".join(message.split())
        self.problems.append(message)
        log.warning(message)
