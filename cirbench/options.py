"""Typed options for methods and benchmarks, parsed strictly on every path (CLI flag, card, ``eval --all``).

Each option is declared once, by the class it belongs to, with its type, default, allowed values and help. A value
may come as a string (``-o key=value``, ``-p key=value``) or already typed (a YAML card); both go through the same
parser, so ``remove_reference='false'`` is the boolean false everywhere and ``promt=x`` is an error everywhere.

``keyed=False`` marks options that do not change the numbers (batch sizes, where data lives, strictness checks):
they are recorded in every result but kept out of its run key. ``varies=True`` marks the choices papers make
differently (reference removal, caption joining, prompt variants): ``cirbench sensitivity`` re-evaluates under each.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cirbench.errors import OptionError, RegistryError

Kind = Literal["bool", "int", "float", "str", "choice", "choices", "path"]
TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})


@dataclass(frozen=True)
class Option:
    """One declared option: ``kind`` is bool, int, float, str, choice (one of ``choices``), choices (a list of
    them, given as a list or a comma list) or path (None allowed)."""

    name: str
    kind: Kind
    default: Any
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    keyed: bool = True
    varies: bool = False  # papers choose this differently: `cirbench sensitivity` tries every other value
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)

    def describe(self) -> str:
        """E.g. ``scoring: hard|soft (default hard)`` for ``cirbench list`` and error messages."""
        kind = "|".join(self.choices) if self.choices else self.kind
        if self.kind == "choices":
            kind = f"list of {kind}"
        return f"{self.name}: {kind} (default {_show(self.default)})"

    def parse(self, value: Any, owner: str) -> Any:
        """The typed value of ``value``; an ``OptionError`` naming the option, the value and what is allowed."""
        parsed = _PARSERS[self.kind](self, value, owner)
        if self.minimum is not None and parsed is not None and parsed < self.minimum:
            raise self.error(owner, value, f"at least {_show(self.minimum)}")
        if self.check is not None and parsed is not None:
            problem = self.check(parsed)
            if problem:
                raise self.error(owner, value, problem)
        return parsed

    def error(self, owner: str, value: Any, wanted: str) -> OptionError:
        return OptionError(f"{owner}: option {self.name}={_show(value)} is not valid; expected {wanted}")


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return repr(value) if isinstance(value, str) else str(value)


def _parse_bool(option: Option, value: Any, owner: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise option.error(owner, value, "true/false, 1/0 or yes/no")


def _parse_int(option: Option, value: Any, owner: str) -> int:
    if isinstance(value, bool):
        raise option.error(owner, value, "an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise option.error(owner, value, "an integer")


def _parse_float(option: Option, value: Any, owner: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise option.error(owner, value, "a number") from None
    else:
        raise option.error(owner, value, "a number")
    if not math.isfinite(result):
        raise option.error(owner, value, "a finite number")
    return result


def _parse_str(option: Option, value: Any, owner: str) -> str:
    if not isinstance(value, str):
        raise option.error(owner, value, "a string")
    return value


def _parse_choice(option: Option, value: Any, owner: str) -> str:
    text = value.strip() if isinstance(value, str) else value
    if text not in option.choices:
        raise option.error(owner, value, f"one of {', '.join(option.choices)}")
    return text


def _parse_choices(option: Option, value: Any, owner: str) -> list[str]:
    if isinstance(value, str):
        items = [item.strip() for item in value.strip().strip("[]").split(",") if item.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise option.error(owner, value, f"a list of {', '.join(option.choices)}")
    bad = [item for item in items if item not in option.choices]
    if bad or not items:
        raise option.error(owner, value, f"a non-empty list of {', '.join(option.choices)}")
    if len(set(items)) != len(items):
        raise option.error(owner, value, "each value at most once")
    return items


def _parse_path(option: Option, value: Any, owner: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise option.error(owner, value, "a path")
    return str(Path(os.path.expandvars(os.path.expanduser(value))))


_PARSERS: dict[str, Callable[[Option, Any, str], Any]] = {
    "bool": _parse_bool,
    "int": _parse_int,
    "float": _parse_float,
    "str": _parse_str,
    "choice": _parse_choice,
    "choices": _parse_choices,
    "path": _parse_path,
}


def parse_options(declared: Sequence[Option], given: Mapping[str, Any] | None, owner: str) -> dict[str, Any]:
    """Every declared option, typed: defaults overlaid with ``given``. Unknown keys are one error naming them all
    and the known ones."""
    by_name = {option.name: option for option in declared}
    given = dict(given or {})
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        known = ", ".join(sorted(by_name)) or "none"
        raise OptionError(f"{owner}: unknown option(s) {', '.join(unknown)}; known: {known}")
    out = {}
    for name, option in by_name.items():
        out[name] = option.parse(given[name], owner) if name in given else _copy(option.default)
    return out


def check_declared_options(declared: Any, owner: str) -> None:
    """A plugin's ``options`` must be a sequence of ``Option`` with unique names (cirbench 0.1 took a dict)."""
    if isinstance(declared, (str, bytes, Mapping)) or not all(isinstance(o, Option) for o in declared):
        raise RegistryError(f"{owner}: 'options' must be a tuple of cirbench.options.Option, got {declared!r}")
    names = [o.name for o in declared]
    if len(set(names)) != len(names):
        raise RegistryError(f"{owner}: an option is declared twice: {sorted(n for n in names if names.count(n) > 1)}")


def alternatives(option: Option) -> list[object]:
    """The values other than the default of a choice or boolean option (what sensitivity tries)."""
    if option.kind == "bool":
        return [not option.default]
    if option.kind == "choice":
        return [c for c in option.choices if c != option.default]
    return []


def keyed_options(declared: Sequence[Option], values: Mapping[str, Any]) -> dict[str, Any]:
    """The options that change the numbers (what a run key hashes)."""
    return {option.name: values[option.name] for option in declared if option.keyed and option.name in values}


def split_pairs(pairs: Sequence[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` strings (CLI) to a dict of raw strings, typed later by :func:`parse_options`."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"expected KEY=VALUE, got {pair!r}")
        out[key.strip()] = value
    return out


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value
