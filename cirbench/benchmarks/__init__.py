"""Benchmark registry: the four built-ins, optional in-tree modules and ``cirbench.benchmarks`` entry points.

Extra benchmarks register themselves with :func:`register_benchmark`; in-tree modules ``shapes`` and
``synthetic`` (when present) and third-party entry points are imported lazily, on the first lookup, so a
broken plugin never breaks ``import cirbench``.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import warnings
from importlib.metadata import entry_points
from typing import Any

from cirbench.benchmarks.base import Benchmark
from cirbench.benchmarks.circo import CIRCO
from cirbench.benchmarks.cirr import CIRR
from cirbench.benchmarks.fashioniq import FashionIQ
from cirbench.benchmarks.genecis import GeneCIS

ENTRY_POINT_GROUP = "cirbench.benchmarks"
OPTIONAL_MODULES = ("cirbench.benchmarks.shapes", "cirbench.benchmarks.synthetic")

BENCHMARKS: dict[str, Benchmark] = {}
_plugins_loaded = False


class UnknownBenchmarkError(KeyError, ValueError):
    """An unknown benchmark name; the message suggests the closest registered names."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def register_benchmark(obj: Any, *, replace: bool = False) -> Any:
    """Register a benchmark instance (or a class, instantiated here) under its ``name``; returns ``obj``.

    Re-registering the same class is a no-op; a different object under a taken name needs ``replace=True``.
    """
    bench = obj() if isinstance(obj, type) else obj
    for attr in ("name", "splits", "load", "metrics", "default_options", "main_metric", "metric_names"):
        if not hasattr(bench, attr):
            raise TypeError(f"{obj!r} is not a Benchmark: missing {attr!r}")
    old = BENCHMARKS.get(bench.name)
    if old is not None and not replace and type(old) is not type(bench):
        raise ValueError(f"benchmark {bench.name!r} is already registered by {type(old).__module__}")
    if old is None or replace:
        BENCHMARKS[bench.name] = bench
    return obj


def _load_plugins() -> None:
    """Import optional in-tree modules and entry points once; failures warn instead of raising."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for mod in OPTIONAL_MODULES:
        try:
            if importlib.util.find_spec(mod) is not None:
                importlib.import_module(mod)
        except Exception as e:  # noqa: BLE001 - a broken optional module must not hide the built-ins
            warnings.warn(f"could not import {mod}: {e}", stacklevel=3)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, type) and not hasattr(obj, "load"):
                obj = obj()  # a factory function
            if getattr(obj, "name", None) not in BENCHMARKS:
                register_benchmark(obj)
        except Exception as e:  # noqa: BLE001
            warnings.warn(f"could not load benchmark entry point {ep.name!r}: {e}", stacklevel=3)


def available_benchmarks() -> list[str]:
    """Every registered name, after loading optional modules and entry points."""
    _load_plugins()
    return sorted(BENCHMARKS)


def get_benchmark(name: str) -> Benchmark:
    """The registered benchmark ``name``; unknown names raise with a "did you mean" suggestion."""
    key = name.strip().lower()
    if key not in BENCHMARKS:
        _load_plugins()
    if key not in BENCHMARKS:
        close = difflib.get_close_matches(key, list(BENCHMARKS), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
        raise UnknownBenchmarkError(f"unknown benchmark {name!r}{hint} Available: {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[key]


for _cls in (CIRCO, CIRR, FashionIQ, GeneCIS):
    register_benchmark(_cls)

__all__ = [
    "BENCHMARKS",
    "ENTRY_POINT_GROUP",
    "UnknownBenchmarkError",
    "available_benchmarks",
    "get_benchmark",
    "register_benchmark",
]
