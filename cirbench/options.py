"""Typed options for methods, benchmarks and the training config, parsed strictly on every path (CLI flag, card,
``eval --all``, ``train lincir --set``).

Each option is declared once, by the class it belongs to, with its type, default, allowed values and help. A value
may come as a string (``-o key=value``, ``-p key=value``) or already typed (a YAML card); both go through the same
pydantic validator, so ``remove_reference='false'`` is the boolean false everywhere and ``promt=x`` is an error
everywhere. The training config (``cirbench.lincir.config``) declares its fields as strict options.

``keyed=False`` marks options that do not change the numbers (batch sizes, where data lives, strictness checks):
they are recorded in every result but kept out of its run key. ``varies=True`` marks the choices papers make
differently (reference removal, caption joining, prompt variants): ``cirbench sensitivity`` re-evaluates under each.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import MinLen
from pydantic import AfterValidator, AllowInfNan, BeforeValidator, ConfigDict, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from cirbench.errors import OptionError, RegistryError, UserError, shown

Kind = Literal["bool", "int", "float", "str", "choice", "choices", "list", "path"]
TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})


@dataclass(frozen=True)
class Option:
    """One declared option: ``kind`` is bool, int, float, str, choice (one of ``choices``), choices (a list of
    them, given as a list or a comma list), list (of strings) or path (None allowed).

    A value is read by the kind's pydantic validator. By default a string is read as the kind (``-o k=v``: ``'5'``
    is 5, ``'yes'`` is True, ``'a,b'`` a list); ``strict`` options take only values already of their Python type (a
    YAML, JSON or Python value: the training config), and an int stays an int where a float is allowed (a recipe
    hash sees what was written). ``nullable``: None is a value too."""

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
    # False: the default value is left out of run keys (an option added after results were stored: their keys stand)
    key_default: bool = True
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)
    strict: bool = False
    nullable: bool = False

    def describe(self) -> str:
        """E.g. ``scoring: hard|soft (default hard)`` for ``cirbench list`` and error messages."""
        kind = "|".join(self.choices) if self.choices else ("str" if self.kind == "list" else self.kind)
        if self.kind in ("choices", "list"):
            kind = f"list of {kind}"
        bounds = bounds_text(self.minimum, self.maximum, self.exclusive_minimum, self.exclusive_maximum)
        return f"{self.name}: {kind} (default {_show(self.default)}){', ' + bounds if bounds else ''}"

    def parse(self, value: Any, owner: str) -> Any:
        """The typed value of ``value``; an ``OptionValueError`` naming the option, the value and what is allowed."""
        try:
            parsed = _adapter(self.kind, self.strict, self.nullable, tuple(self.choices)).validate_python(value)
        except ValidationError as error:
            raise self._refused(owner, value, error) from None
        if self.kind in ("int", "float") and parsed is not None:
            problem = range_problem(parsed, self.minimum, self.maximum, self.exclusive_minimum, self.exclusive_maximum)
            if problem:
                raise OptionValueError(self, owner, value, "range", problem)
        if self.check is not None and parsed is not None:
            problem = self.check(parsed)
            if problem:
                raise OptionValueError(self, owner, value, "check", problem)
        return parsed

    def error(self, owner: str, value: Any, wanted: str) -> OptionError:
        return OptionValueError(self, owner, value, "check", wanted)

    def _refused(self, owner: str, value: Any, error: ValidationError) -> OptionValueError:
        """Pydantic's refusal as one line: what this kind expects (a finite number, one of the choices, ...)."""
        types = {e["type"] for e in error.errors()}
        if "finite_number" in types:
            return OptionValueError(self, owner, value, "finite", "a finite number")
        if "repeated" in types:
            return OptionValueError(self, owner, value, "repeated", "each value at most once")
        listed = ", ".join(self.choices)
        if self.kind == "choice" and (isinstance(value, str) or not self.strict):
            return OptionValueError(self, owner, value, "choice", f"one of {listed}")
        if self.kind == "choices" and not self.strict:
            wanted = f"a list of {listed}" if "list_type" in types else f"a non-empty list of {listed}"
            return OptionValueError(self, owner, value, "choice", wanted)
        wanted = (_TYPE_NAMES if self.strict else _LAX_WANTED)[self.kind]
        if self.strict and (self.nullable or self.kind == "path"):
            wanted += " | None"
        return OptionValueError(self, owner, value, "type", wanted)


class OptionValueError(OptionError):
    """A value one option refuses, with the parts a caller may word its own way (``cirbench.lincir.config``):
    ``reason`` (type, finite, range, choice, repeated, check) and ``wanted`` (what is expected)."""

    def __init__(self, option: Option, owner: str, value: Any, reason: str, wanted: str) -> None:
        super().__init__(f"{owner}: option {option.name}={_show(value)} is not valid; expected {wanted}")
        self.option, self.value, self.reason, self.wanted = option, value, reason, wanted

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (a worker's error) as the plain message
        return OptionError, self.args


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


# --- reading a value: one pydantic validator per kind ---------------------------------------------------------------
# Every kind is checked by pydantic in strict mode (no bool for an int, no 2.5 for an int, no NaN or infinity for a
# float, only listed choices, each at most once). A non-strict option first reads text the way ``-o key=value`` is
# written (the readers below); anything else goes to the strict check as it came.

_TYPE_NAMES = {"bool": "bool", "int": "int", "float": "float", "str": "str", "choice": "str", "choices": "list[str]"}
_TYPE_NAMES |= {"list": "list[str]", "path": "str"}
_LAX_WANTED = {"bool": "true/false, 1/0 or yes/no", "int": "an integer", "float": "a number", "str": "a string"}
_LAX_WANTED |= {"list": "a list of strings", "path": "a path"}


def _read_bool(value: Any) -> Any:
    """``true``/``1``/``yes`` and ``false``/``0``/``no`` (any case), and the integers 1 and 0."""
    if isinstance(value, str):
        word = value.strip().lower()
        return True if word in TRUE_WORDS else False if word in FALSE_WORDS else value
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    return value


def _read_int(value: Any) -> Any:
    """Python's integer syntax for text; a float with no fractional part (a YAML ``5.0``) is that integer."""
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _read_float(value: Any) -> Any:
    """Python's float syntax for text; an integer as a float (one too large for a float: infinite, so refused)."""
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return float("inf")
    return value


def _read_choice(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _read_list(value: Any) -> Any:
    """A comma list (``a,b``, ``[a, b]``) or a tuple as a list; items of a given list stay as written."""
    if isinstance(value, str):
        return [item.strip() for item in value.strip().strip("[]").split(",") if item.strip()]
    return list(value) if isinstance(value, tuple) else value


def _read_path(value: Any) -> Any:
    """None and ``""`` are no path; a path-like object is its string."""
    if value is None or (isinstance(value, str) and value == ""):
        return None
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _expand(path: str | None) -> str | None:
    return None if path is None else str(Path(os.path.expandvars(os.path.expanduser(path))))


def _once(items: list[str]) -> list[str]:
    if len(set(items)) != len(items):
        raise PydanticCustomError("repeated", "each value at most once")
    return items


_READERS = {"bool": _read_bool, "int": _read_int, "float": _read_float, "choice": _read_choice}
_READERS |= {"choices": _read_list, "list": _read_list}


@functools.cache
def _adapter(kind: str, strict: bool, nullable: bool, choices: tuple[str, ...]) -> TypeAdapter:
    """The validator of one kind (built once per kind, strictness and choice list)."""
    finite = Annotated[float, AllowInfNan(False)]
    one_of = Literal[choices] if choices else str  # type: ignore[valid-type]
    core: Any = {
        "bool": bool,
        "int": int,
        "float": int | finite if strict else finite,
        "str": str,
        "choice": one_of,
        "choices": Annotated[list[one_of], MinLen(1), AfterValidator(_once)],  # type: ignore[valid-type]
        "list": list[str],
        "path": Annotated[str | None, AfterValidator(_expand)],
    }[kind]
    if nullable:
        core = core | None
    reader = _read_path if kind == "path" else None if strict else _READERS.get(kind)
    if reader is not None:
        core = Annotated[core, BeforeValidator(reader)]
    return TypeAdapter(core, config=ConfigDict(strict=True))


def parse_options(
    declared: Sequence[Option],
    given: Mapping[str, Any] | None,
    owner: str,
    *,
    noun: str = "option",
    error: type[UserError] = OptionError,
) -> dict[str, Any]:
    """Every declared option, typed: defaults overlaid with ``given``. Unknown keys are one ``error`` naming them,
    the known ones and the closest match; a bad value is one ``OptionValueError``."""
    by_name = {option.name: option for option in declared}
    given = dict(given or {})
    refuse_unknown(given, by_name, owner, noun=noun, error=error)
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
    return {
        option.name: values[option.name]
        for option in declared
        if option.keyed and option.name in values and (option.key_default or values[option.name] != option.default)
    }


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
