"""Method and benchmark cards: the editable YAML files that ``eval --all`` runs and ``train lincir --config`` reads.

A method card names a method, a backbone, an optional checkpoint and options (and, for a trainable method, a
``train:`` section); a benchmark card names a benchmark, a split, where its data lives and protocol options.

Paths inside a card are relative to the card file, so a project's cards work from any working directory. ``~`` and
``$VARS`` are expanded; ``$CWD`` is the working directory (the package's own shapes cards use it to find the demo's
run). ``find_card_dirs`` picks the nearest folder, upward from the working directory, holding ``methods/`` and
``benchmarks/``; without one, the package's own shapes cards.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from cirbench.errors import CardError

PACKAGE_CARDS = Path(__file__).parent / "default_cards"
TRAIN_PATH_FIELDS = ("out", "masks", "val_root")


class _Card(BaseModel):
    model_config = ConfigDict(extra="allow")  # documentation fields (source_url, official_checkpoint, ...) are kept

    name: str
    description: str = ""
    options: dict[str, Any] = {}
    path: Path | None = None

    @field_validator("options", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class MethodCard(_Card):
    method: str
    backbone: str | None = None
    checkpoint: Path | None = None
    variant: str = ""
    quick_gelu: bool | None = None  # the activation of a local MODEL:/path backbone (None: from the id)
    benchmarks: list[str] | None = None  # restrict to these benchmark names (None: every benchmark card)
    train: dict[str, Any] | None = None


class BenchmarkCard(_Card):
    benchmark: str
    split: str
    root: Path | None = None


def expand_path(value: Any, base: Path) -> Path | None:
    """``~``, ``$VARS`` and ``$CWD`` expanded; a relative path is taken from ``base`` (the card's folder)."""
    if value in (None, ""):
        return None
    text = str(value).replace("${CWD}", str(Path.cwd())).replace("$CWD", str(Path.cwd()))
    path = Path(os.path.expandvars(os.path.expanduser(text)))
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def read_card_mapping(path: Path) -> dict[str, Any]:
    """The YAML mapping of a card file; unreadable YAML is one ``CardError`` naming the file."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        detail = " ".join(str(error).split())
        raise CardError(f"cannot read card {path}: {detail}") from error
    if not isinstance(data, dict):
        raise CardError(f"card {path} is not a YAML mapping")
    return data


def _validate(model: type[_Card], data: dict[str, Any], path: Path) -> Any:
    try:
        return model.model_validate({"name": path.stem, **data, "path": path})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "card"
        raise CardError(f"card {path}: field {where!r}: {first['msg']} (got {first.get('input')!r})") from error


def load_method_card(path: Path) -> MethodCard:
    path = Path(path)
    data = read_card_mapping(path)
    if "method" not in data:
        raise CardError(f"card {path} has no 'method' field")
    card = _validate(MethodCard, data, path)
    card.checkpoint = expand_path(data.get("checkpoint"), path.parent)
    if card.train is not None:
        card.train = train_section(card, path)
    return card


def load_benchmark_card(path: Path) -> BenchmarkCard:
    from cirbench.benchmarks import get_benchmark

    path = Path(path)
    data = read_card_mapping(path)
    for field in ("benchmark", "split"):
        if field not in data:
            raise CardError(f"card {path} has no {field!r} field")
    card = _validate(BenchmarkCard, data, path)
    card.root = expand_path(data.get("root"), path.parent)
    path_options = {o.name for o in get_benchmark(card.benchmark).options if o.kind == "path"}
    card.options = {
        k: (str(expand_path(v, path.parent)) if k in path_options and v not in (None, "") else v)
        for k, v in card.options.items()
    }
    return card


def train_section(card: MethodCard, path: Path) -> dict[str, Any]:
    """A method card's ``train:`` options, with its backbone and paths made relative to the card file."""
    section = dict(card.train or {})
    if card.backbone and "backbone" not in section:
        section["backbone"] = card.backbone
    for key in TRAIN_PATH_FIELDS:
        if section.get(key) not in (None, ""):
            section[key] = str(expand_path(section[key], path.parent))
    if section.get("corpora"):
        section["corpora"] = [_corpus_spec(spec, path.parent) for spec in section["corpora"]]
    return section


def _corpus_spec(spec: Any, base: Path) -> str:
    """A local corpus (``file[#column]``, a glob) relative to the card; hub specs (``hf:owner/name``) unchanged."""
    text = str(spec)
    if text.startswith("hf:"):
        return text
    location, sep, column = text.partition("#")
    return f"{expand_path(location, base)}{sep}{column}"


def load_cards(folder: Path, loader) -> list:
    if not Path(folder).is_dir():
        return []
    return [loader(p) for p in sorted(Path(folder).glob("*.yaml")) + sorted(Path(folder).glob("*.yml"))]


def find_card_dirs(start: Path | None = None) -> tuple[Path, Path]:
    """(methods dir, benchmarks dir): the nearest folder upward from ``start`` that holds both, else the package's
    own shapes cards."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if _holds_cards(folder / "methods") and _holds_cards(folder / "benchmarks"):
            return folder / "methods", folder / "benchmarks"
    return PACKAGE_CARDS / "methods", PACKAGE_CARDS / "benchmarks"


def _holds_cards(folder: Path) -> bool:
    """A card folder holds YAML files and is no Python package (``cirbench/methods/`` is code, not cards)."""
    return (
        folder.is_dir()
        and not (folder / "__init__.py").exists()
        and any(p.suffix in (".yaml", ".yml") for p in folder.iterdir())
    )
