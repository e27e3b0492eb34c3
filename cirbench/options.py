"""Typed options for methods and benchmarks, parsed strictly on every path (CLI flag, card, ``eval --all``).

Each option is declared once, by the class it belongs to, with its type, default, allowed values and help. A value
may come as a string (``-o key=value``, ``-p key=value``) or already typed (a YAML card); both go through the same
parser, so ``remove_reference='false'`` is the boolean false everywhere and ``promt=x`` is an error everywhere.

``keyed=False`` marks options that do not change the numbers (batch sizes, where data lives, strictness checks):
they are recorded in every result but kept out of its run key. ``varies=True`` marks the choices papers make
differently (reference removal, caption joining, prompt variants): ``cirbench sensitivity`` re-evaluates under each.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cirbench.errors import OptionError, RegistryError, UserError, shown

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
    minimum: float | None = None  # inclusive bounds (see ``range_problem``)
    maximum: float | None = None
    exclusive_minimum: float | None = None  # e.g. a learning rate: more than 0
    exclusive_maximum: float | None = None  # e.g. a dropout probability: less than 1
    keyed: bool = True
    varies: bool = False  # papers choose this differently: `cirbench sensitivity` tries every other value
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)

    def describe(self) -> str:
        """E.g. ``scoring: hard|soft (default hard)`` for ``cirbench list`` and error messages."""
        kind = "|".join(self.choices) if self.choices else self.kind
        if self.kind == "choices":
            kind = f"list of {kind}"
        bounds = bounds_text(self.minimum, self.maximum, self.exclusive_minimum, self.exclusive_maximum)
        return f"{self.name}: {kind} (default {_show(self.default)}){', ' + bounds if bounds else ''}"

    def parse(self, value: Any, owner: str) -> Any:
        """The typed value of ``value``; an ``OptionError`` naming the option, the value and what is allowed."""
        parsed = _PARSERS[self.kind](self, value, owner)
        if self.kind in ("int", "float") and parsed is not None:
            problem = range_problem(parsed, self.minimum, self.maximum, self.exclusive_minimum, self.exclusive_maximum)
            if problem:
                raise self.error(owner, value, problem)
        if self.check is not None and parsed is not None:
            problem = self.check(parsed)
            if problem:
                raise self.error(owner, value, problem)
        return parsed

    def error(self, owner: str, value: Any, wanted: str) -> OptionError:
        return OptionError(f"{owner}: option {self.name}={_show(value)} is not valid; expected {wanted}")


SEED_MAX = 2**32 - 1  # numpy's legacy and torch's seeds: every seed option and the training seed share the range


def seed_option(help: str, name: str = "seed") -> Option:
    """A seed: an integer in [0, 2**32 - 1] (a negative or huge seed is refused here, not by numpy mid-run)."""
    return Option(name, "int", 0, help, minimum=0, maximum=SEED_MAX)


def _show(value: Any) -> str:
    """A value as messages print it: a short list as ``a,b``, anything else through ``shown`` (bounded, one line)."""
    if isinstance(value, (list, tuple)) and len(value) <= 8 and all(isinstance(v, (str, int, float)) for v in value):
        text = " ".join(",".join(map(str, value)).split())
        return text if len(text) <= 80 else text[:77] + "..."
    return shown(value)


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
    """Every declared option, typed: defaults overlaid with ``given``. Unknown keys are one error naming them, the
    known ones and the closest match."""
    by_name = {option.name: option for option in declared}
    given = dict(given or {})
    refuse_unknown(given, by_name, owner)
    out = {}
    for name, option in by_name.items():
        out[name] = option.parse(given[name], owner) if name in given else _copy(option.default)
    return out


# --- the strictness every configuration surface shares (options, cards, training settings, KEY=VALUE flags) -----


def did_you_mean(word: object, known: Iterable[str], hints: Mapping[str, str] | None = None) -> str:
    """``"; did you mean 'x'?"`` for the known name closest to ``word`` (or a hint: ``protocol`` -> ``options``),
    else ``""``."""
    if not isinstance(word, str):
        return ""
    close = [hints[word]] if hints and word in hints else difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def refuse_unknown(
    given: Iterable[Any],
    known: Iterable[str],
    owner: str,
    *,
    noun: str = "option",
    error: type[UserError] = OptionError,
    hints: Mapping[str, str] | None = None,
) -> None:
    """One ``error`` naming the unknown keys of ``given`` (at most five), every known one and the closest match."""
    known = sorted(known)
    unknown = sorted({k for k in given if not (isinstance(k, str) and k in known)}, key=str)
    if not unknown:
        return
    names = ", ".join(_name(k) for k in unknown[:5]) + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
    raise error(
        f"{owner}: unknown {noun}(s) {names}; known: {', '.join(known) or 'none'}"
        f"{did_you_mean(unknown[0], known, hints)}"
    )


def _name(key: Any) -> str:
    """A key as messages print it: bare when it is a short plain name, else bounded by ``shown``."""
    if isinstance(key, str) and key.isprintable() and " " not in key and 0 < len(key) <= 40:
        return key
    return shown(key, 40)


def range_problem(
    value: float,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: float | None = None,
    exclusive_maximum: float | None = None,
) -> str | None:
    """None when ``value`` is inside the bounds, else what is expected (``at least 1``, ``more than 0``, ``a value
    in [0, 1)``). NaN is outside every bound."""
    low, low_open = (exclusive_minimum, True) if exclusive_minimum is not None else (minimum, False)
    high, high_open = (exclusive_maximum, True) if exclusive_maximum is not None else (maximum, False)
    inside = (low is None or (value > low if low_open else value >= low)) and (
        high is None or (value < high if high_open else value <= high)
    )
    if inside and value == value:
        return None
    return bounds_text(minimum, maximum, exclusive_minimum, exclusive_maximum) or "a number"


def bounds_text(
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: float | None = None,
    exclusive_maximum: float | None = None,
) -> str:
    """The bounds in words (``at least 1``, ``a value in [0, 1)``); ``""`` when there are none."""
    low, low_open = (exclusive_minimum, True) if exclusive_minimum is not None else (minimum, False)
    high, high_open = (exclusive_maximum, True) if exclusive_maximum is not None else (maximum, False)
    if low is not None and high is not None:
        return f"a value in {'(' if low_open else '['}{_show(low)}, {_show(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'more than' if low_open else 'at least'} {_show(low)}"
    if high is not None:
        return f"{'less than' if high_open else 'at most'} {_show(high)}"
    return ""


def require_bounds(flag: str, value: float | None, **bounds: float) -> None:
    """A numeric command-line flag inside its bounds (``--batch-size 0`` is one line, not a library error)."""
    problem = None if value is None else range_problem(value, **bounds)
    if problem:
        raise OptionError(f"{flag} {_show(value)}: expected {problem}")


def unique_pairs(pairs: Iterable[tuple[Any, Any]], owner: str, error: type[UserError] = OptionError) -> dict[Any, Any]:
    """``(key, value)`` pairs to a dict; a key given twice is one ``error`` (never silently the last)."""
    out: dict[Any, Any] = {}
    for key, value in pairs:
        if key in out:
            raise error(
                f"{owner}: {_name(key)} is given twice ({_show(out[key])}, then {_show(value)}); give each key once"
            )
        out[key] = value
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


def split_pairs(pairs: Sequence[str] | None, owner: str = "KEY=VALUE flags") -> dict[str, str]:
    """``KEY=VALUE`` strings (CLI ``-o``, ``-p``, ``--index-param``) to a dict of raw strings, typed later by
    :func:`parse_options`; a key given twice is an error."""
    return unique_pairs((_split_pair(pair) for pair in pairs or []), owner)


def _split_pair(pair: str) -> tuple[str, str]:
    key, sep, value = pair.partition("=")
    if not sep or not key.strip():
        raise OptionError(f"expected KEY=VALUE, got {shown(pair)}")
    return key.strip(), value


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value
