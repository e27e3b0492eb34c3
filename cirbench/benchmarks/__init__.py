"""The benchmark registry: every module of this folder and ``cirbench.benchmarks`` entry points, on first lookup.

A benchmark module registers its class with ``BENCHMARKS.register(MyBenchmark)`` (or the ``register_benchmark``
decorator); dropping the module in this folder is all it takes (no list to edit). A package adds one through an
entry point in the ``cirbench.benchmarks`` group pointing at the class.
"""

from __future__ import annotations

from typing import Any

from cirbench.benchmarks.base import Benchmark
from cirbench.errors import RegistryError
from cirbench.options import check_declared_options
from cirbench.registry import Registry

REQUIRED = ("name", "splits", "main_metric", "metric_names", "read", "metrics")


def _adapt(obj: Any) -> Benchmark:
    """A registered benchmark is an instance; a class (or a zero-argument factory) is called once."""
    bench = obj() if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "metrics")) else obj
    missing = [attr for attr in REQUIRED if not hasattr(bench, attr)]
    if missing or not isinstance(bench, Benchmark):
        problem = f"missing {', '.join(missing)}" if missing else "not a subclass of cirbench.benchmarks.Benchmark"
        raise RegistryError(f"{obj!r} is not a benchmark: {problem}")
    check_declared_options(bench.options, f"benchmark {bench.name!r}")
    return bench


BENCHMARKS: Registry[Benchmark] = Registry(
    "benchmark",
    adapt=_adapt,
    name_of=lambda bench: bench.name,
    builtin_packages=("cirbench.benchmarks",),
    normalise=lambda name: name.strip().lower(),
)


def register_benchmark(obj: Any = None, *, replace: bool = False) -> Any:
    """Register a benchmark class or instance (usable as a class decorator); returns it unchanged."""
    return BENCHMARKS.register(obj, replace=replace)


def get_benchmark(name: str) -> Benchmark:
    """The registered benchmark ``name``; unknown names are a user error with a "did you mean" suggestion."""
    return BENCHMARKS.get(name)


def available_benchmarks() -> list[str]:
    return BENCHMARKS.names()


__all__ = ["BENCHMARKS", "Benchmark", "available_benchmarks", "get_benchmark", "register_benchmark"]
