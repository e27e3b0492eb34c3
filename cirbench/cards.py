"""Method and benchmark cards: the editable YAML files that ``eval --all`` runs and ``train lincir --config`` reads.

A method card names a method, a backbone, an optional checkpoint and options (and, for a trainable method, a
``train:`` section); a benchmark card names a benchmark, a split, where its data lives and protocol options.

Paths inside a card are relative to the card file, so a project's cards work from any working directory. ``~`` and
``$VARS`` are expanded; ``$CWD`` is the working directory (the package's own shapes cards use it to find the demo's
run). ``find_card_dirs`` picks the nearest folder, upward from the working directory, holding ``methods/`` and
``benchmarks/``; without one, the package's own shapes cards.

Cards are strict: they are read by ``yaml_io`` (a key twice, an alias bomb or a file over 1 MiB is refused), every
field is declared (documentation fields too: ``source_url``, ``notes``, ``checkpoint_file``, ``official_checkpoint``),
so ``optoins:`` or ``protocol:`` is an error with a "did you mean", and a card's method, benchmark, split, options
and ``benchmarks:`` list are checked against the registries when it is read, before any work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cirbench import yaml_io
from cirbench.errors import CardError, OptionError, UnknownNameError, shown
from cirbench.options import refuse_unknown
from cirbench.paths import nearest_upward

PACKAGE_CARDS = Path(__file__).parent / "default_cards"
TRAIN_PATH_FIELDS = ("out", "masks", "val_root")
MAX_CARD_BYTES = 1 << 20
# Words people write for a card field, and the field they mean (used by the "did you mean").
FIELD_HINTS = {
    "protocol": "options",
    "params": "options",
    "option": "options",
    "data_root": "root",
    "url": "source_url",
}


class _Strict(BaseModel):
    """Every field declared and of its type as YAML gives it (no bytes for a string, no set for a list)."""

    model_config = ConfigDict(extra="forbid", strict=True)


CardPath = Annotated[Path | None, Field(strict=False)]  # YAML gives a path as text


class OfficialCheckpoint(_Strict):
    """Documentation: the authors' released weights (where to get them, what format)."""

    file: str | None = None
    url: str | None = None
    format: str | None = None
    notes: str | None = None


class _Card(_Strict):
    name: str
    description: str = ""
    options: dict[str, Any] = {}
    source_url: str | None = None  # documentation: where the weights or data come from
    notes: str | None = None  # documentation: free text
    path: CardPath = None  # set by the reader (the card file), never written in a card

    @field_validator("options", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class MethodCard(_Card):
    method: str
    backbone: str | None = None
    checkpoint: CardPath = None
    variant: str = ""
    quick_gelu: bool | None = None  # the activation of a local MODEL:/path backbone (None: from the id)
    benchmarks: list[str] | None = None  # restrict to these benchmark names (None: every benchmark card)
    train: dict[str, Any] | None = None
    checkpoint_file: str | None = None  # documentation: the released file's name
    official_checkpoint: OfficialCheckpoint | None = None  # documentation: the authors' weights


class BenchmarkCard(_Card):
    benchmark: str
    split: str
    root: CardPath = None


def expand_path(value: Any, base: Path) -> Path | None:
    """``~``, ``$VARS`` and ``$CWD`` expanded; a relative path is taken from ``base`` (the card's folder)."""
    if value in (None, ""):
        return None
    text = str(value).replace("${CWD}", str(Path.cwd())).replace("$CWD", str(Path.cwd()))
    path = Path(os.path.expandvars(os.path.expanduser(text)))
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def read_card_mapping(path: Path) -> dict[str, Any]:
    """The YAML mapping of a card file, read strictly (``yaml_io``); anything unreadable is one ``CardError``
    naming the file (an alias bomb or a file over 1 MiB: one ``LimitError``)."""
    try:
        data = yaml_io.read(path, f"card {path}", MAX_CARD_BYTES)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        detail = " ".join(str(error).split())
        raise CardError(f"cannot read card {path}: {detail[:300]}") from error
    if not isinstance(data, dict):
        raise CardError(f"card {path} is not a YAML mapping")
    return data


def _validate(model: type[_Card], data: dict[str, Any], path: Path) -> Any:
    """The typed card: unknown fields (with a "did you mean") and fields of the wrong type are one line."""
    refuse_unknown(
        data, set(model.model_fields) - {"path"}, f"card {path}", noun="field", error=CardError, hints=FIELD_HINTS
    )
    try:
        return model.model_validate({"name": path.stem, **data, "path": path})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "card"
        raise CardError(
            f"card {path}: field {shown(where, 60)}: {first['msg']} (got {shown(first.get('input'))})"
        ) from None


def _registered(path: Path, check: Any) -> Any:
    """``check()`` with an unknown name or a bad option turned into a ``CardError`` naming the card."""
    try:
        return check()
    except (OptionError, UnknownNameError) as error:
        raise CardError(f"card {path}: {' '.join(str(error).split())}") from None


def load_method_card(path: Path) -> MethodCard:
    from cirbench.benchmarks import get_benchmark
    from cirbench.methods import get_method_entry

    path = Path(path)
    data = read_card_mapping(path)
    if "method" not in data:
        raise CardError(f"card {path} has no 'method' field")
    card = _validate(MethodCard, data, path)
    card.checkpoint = expand_path(data.get("checkpoint"), path.parent)
    _registered(path, lambda: get_method_entry(card.method).parse_options(card.options))
    for name in card.benchmarks or []:
        _registered(path, lambda name=name: get_benchmark(name))
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
    bench = _registered(path, lambda: get_benchmark(card.benchmark))
    path_options = {o.name for o in bench.options if o.kind == "path"}
    card.options = {
        k: (str(expand_path(v, path.parent)) if k in path_options and isinstance(v, str) and v else v)
        for k, v in card.options.items()
    }
    _registered(path, lambda: (bench.resolve_split(card.split), bench.parse_options(card.options)))
    return card


def train_section(card: MethodCard, path: Path) -> dict[str, Any]:
    """A method card's ``train:`` options, with its backbone and paths made relative to the card file. Values of
    the wrong type are left as written, for the training config to refuse (never ``str()``-ed into a path)."""
    section = dict(card.train or {})
    if card.backbone and "backbone" not in section:
        section["backbone"] = card.backbone
    for key in TRAIN_PATH_FIELDS:
        if isinstance(section.get(key), str) and section[key]:
            section[key] = str(expand_path(section[key], path.parent))
    if isinstance(section.get("corpora"), list):
        section["corpora"] = [
            _corpus_spec(spec, path.parent) if isinstance(spec, str) else spec for spec in section["corpora"]
        ]
    return section


def _corpus_spec(spec: str, base: Path) -> str:
    """A local corpus (``file[#column]``, a glob) relative to the card; hub specs (``hf:owner/name``) unchanged."""
    location, sep, column = spec.partition("#")
    if spec.startswith("hf:") or not location:
        return spec
    return f"{expand_path(location, base)}{sep}{column}"


def load_cards(folder: Path, loader) -> list:
    """Every card in ``folder`` (``*.yaml``, ``*.yml``); two cards with one name are an error (which one a report
    or a skip names would be ambiguous)."""
    if not Path(folder).is_dir():
        return []
    cards = [loader(p) for p in sorted(Path(folder).glob("*.yaml")) + sorted(Path(folder).glob("*.yml"))]
    first: dict[str, Any] = {}
    for card in cards:
        if card.name in first:
            raise CardError(
                f"cards {first[card.name].path} and {card.path} both have the name {shown(card.name)}; "
                "give each card its own name"
            )
        first[card.name] = card
    return cards


def find_card_dirs(start: Path | None = None) -> tuple[Path, Path]:
    """(methods dir, benchmarks dir): the nearest folder upward from ``start`` that holds both, else the package's
    own shapes cards."""
    folder = nearest_upward(lambda f: _holds_cards(f / "methods") and _holds_cards(f / "benchmarks"), start)
    if folder is not None:  # the same upward search that finds the results folder (``paths.find_results_dir``)
        return folder / "methods", folder / "benchmarks"
    return PACKAGE_CARDS / "methods", PACKAGE_CARDS / "benchmarks"


def _holds_cards(folder: Path) -> bool:
    """A card folder holds YAML files and is no Python package (``cirbench/methods/`` is code, not cards)."""
    return (
        folder.is_dir()
        and not (folder / "__init__.py").exists()
        and any(p.suffix in (".yaml", ".yml") for p in folder.iterdir())
    )
