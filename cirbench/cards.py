"""Method and benchmark cards: the editable YAML files in ``methods/`` and ``benchmarks/`` that ``eval --all`` runs.

A method card names a method, a backbone, an optional checkpoint and options; a benchmark card names a
benchmark, a split, where its data lives and protocol options. Paths may use ``~`` and ``$VARS``; relative
paths are relative to the current directory (the project root, usually).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cirbench.commands import CLIError


@dataclass
class MethodCard:
    name: str
    method: str
    backbone: str | None
    checkpoint: Path | None = None
    variant: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    benchmarks: list[str] | None = None  # restrict to these benchmark names (None: every benchmark card)
    path: Path | None = None


@dataclass
class BenchmarkCard:
    name: str
    benchmark: str
    split: str
    root: Path | None
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    path: Path | None = None


def expand_path(value: Any) -> Path | None:
    if value in (None, ""):
        return None
    return Path(os.path.expandvars(os.path.expanduser(str(value))))


def _read(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, dict):
        raise CLIError(f"card {path} is not a YAML mapping")
    return data


def _require(data: dict[str, Any], key: str, path: Path) -> Any:
    if key not in data:
        raise CLIError(f"card {path} has no {key!r} field")
    return data[key]


def load_method_card(path: Path) -> MethodCard:
    data = _read(path)
    return MethodCard(
        name=str(data.get("name", path.stem)),
        method=str(_require(data, "method", path)),
        backbone=data.get("backbone"),
        checkpoint=expand_path(data.get("checkpoint")),
        variant=str(data.get("variant", "") or ""),
        options=dict(data.get("options") or {}),
        description=str(data.get("description", "") or ""),
        benchmarks=list(data["benchmarks"]) if data.get("benchmarks") else None,
        path=path,
    )


def load_benchmark_card(path: Path) -> BenchmarkCard:
    data = _read(path)
    return BenchmarkCard(
        name=str(data.get("name", path.stem)),
        benchmark=str(_require(data, "benchmark", path)),
        split=str(_require(data, "split", path)),
        root=expand_path(data.get("root")),
        options=dict(data.get("options") or {}),
        description=str(data.get("description", "") or ""),
        path=path,
    )


def load_cards(folder: Path, loader) -> list:
    if not Path(folder).is_dir():
        return []
    return [loader(p) for p in sorted(Path(folder).glob("*.yaml")) + sorted(Path(folder).glob("*.yml"))]
