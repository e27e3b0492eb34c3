"""Reading annotation files strictly: every problem is one ``AnnotationError`` naming the file, the record, the field
and the fix.

Loaders never guess: a field of the wrong type (a ``pairid`` that is a list, a caption that is null), a duplicate
id or key, and a path that leaves the data root are refused, never converted with ``str()`` or followed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cirbench.containment import DataRoot, contained
from cirbench.errors import AnnotationError, LimitError, shown

_KINDS = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "number": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
}


class FileTooLargeError(LimitError, AnnotationError):
    """A data file over its size limit: refused before it is read (bounded work). An ``AnnotationError`` too, so
    ``data check`` lists it with the split's other problems."""


MAX_BYTES = 1 << 30  # 1 GiB: COCO's instances_train2017.json (448 MB) is the largest file a loader reads


def _no_duplicate_keys(path: Path, fix: str):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise AnnotationError(f"{path}: the key {shown(key)} appears twice in one object; {fix}")
            out[key] = value
        return out

    return hook


def _where_not_finite(value: Any) -> str:
    """Where the first NaN or infinity sits in parsed JSON: ``record 3 > field 'target_soft' > field 'dev-1'``."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while stack:
        item, trail = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return " > ".join(trail) or "the top level"
        if isinstance(item, dict):
            stack.extend((v, (*trail, f"field {shown(k)}")) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            word = "item" if trail else "record"
            stack.extend((v, (*trail, f"{word} {i}")) for i, v in reversed(list(enumerate(item))))
    return "the file"


def read_text(path: Path, fix: str, max_bytes: int = MAX_BYTES) -> str:
    """The text of an annotation or list file: every data file a loader reads comes through here. Refused in one
    line naming the file: unreadable (missing, a folder, no permission), over ``max_bytes`` (checked before reading:
    bounded work), not UTF-8. A UTF-8 byte-order mark (Windows editors write one) is dropped."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise FileTooLargeError(
                f"{path}: {size / 2**20:.1f} MiB is over the {max_bytes / 2**20:.0f} MiB a file of this kind may "
                f"hold; is it the right file? {fix}"
            )
        data = path.read_bytes()
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read ({' '.join(str(e).split())}); {fix}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise AnnotationError(
            f"{path}: not UTF-8 text (byte {e.start}); the file is damaged or not a text file, {fix}"
        ) from None


def read_annotation_json(path: Path, fix: str, max_bytes: int = MAX_BYTES) -> Any:
    """Parse an annotation file (``read_text``); invalid JSON, a key twice in an object (``json`` would silently keep
    the last value) or ``NaN`` / ``Infinity`` is an ``AnnotationError`` naming the file and the fix."""
    text = read_text(path, fix, max_bytes)
    constants: list[str] = []
    try:
        data = json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys(path, fix),
            parse_constant=lambda word: constants.append(word) or float(word),
        )
    except (ValueError, RecursionError) as e:
        if isinstance(e, AnnotationError):
            raise
        raise AnnotationError(f"{path}: cannot read JSON ({' '.join(str(e).split())[:200]}); {fix}") from None
    if constants:
        raise AnnotationError(
            f"{path}: {_where_not_finite(data)} holds {constants[0]}, which is not a number (only finite numbers are "
            f"allowed); the file is damaged or edited, {fix}"
        )
    return data


def read_lines(path: Path, fix: str, max_bytes: int = MAX_BYTES) -> list[tuple[int, str]]:
    """The records of a line-based list file as ``(line number, line)``, blank lines left out (they hold no record;
    ``\\r\\n`` endings and a byte-order mark are accepted). A list with no record is refused naming the file: an
    empty query or gallery list is never a run."""
    lines = [(n, line) for n, line in enumerate(read_text(path, fix, max_bytes).splitlines(), 1) if line.strip()]
    if not lines:
        raise AnnotationError(f"{path}: the list is empty (no line holds a record); {fix}")
    return lines


def bad_record(fix: str, path: Path, index: int, problem: str) -> AnnotationError:
    """The error for one malformed record: file, record index, what is wrong, how to fix it."""
    return AnnotationError(f"{path}: record {index}: {problem}; the file is damaged or edited, {fix}")


def missing_fields(record: Any, needed: Sequence[str]) -> list[str]:
    """The fields of ``needed`` a record lacks (all of them when it is not a JSON object)."""
    return [f for f in needed if not isinstance(record, dict) or f not in record]


def _shown(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict, type(None), bool)) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def field(record: dict[str, Any], name: str, kind: str, fix: str, path: Path, index: int) -> Any:
    """``record[name]``, refused unless it is of ``kind`` (int, str, number, list, dict)."""
    check, wanted = _KINDS[kind]
    value = record[name]
    if not check(value):
        raise bad_record(
            fix, path, index, f"field {name!r} must be {wanted}, got {type(value).__name__} {_shown(value)}"
        )
    return value


def items(record: dict[str, Any], name: str, kind: str, fix: str, path: Path, index: int) -> list[Any]:
    """``record[name]`` as a list whose every item is of ``kind``."""
    values = field(record, name, "list", fix, path, index)
    check, wanted = _KINDS[kind]
    bad = [v for v in values if not check(v)]
    if bad:
        raise bad_record(fix, path, index, f"field {name!r} must list {wanted}s, got {_shown(bad[0])}")
    return values


def file_name(value: Any, what: str, fix: str, path: Path, index: int | None = None) -> str:
    """An image name that becomes part of a file path: a non-empty string with no folder in it."""
    if not isinstance(value, str) or not value or value in (".", "..") or any(c in value for c in "/\\\0"):
        where = f"record {index}: " if index is not None else ""
        raise AnnotationError(
            f"{path}: {where}{what} {_shown(value)} is not a plain file name (no folders, no '..'); "
            f"the file is damaged or edited, {fix}"
        )
    return value


def inside(
    root: DataRoot | Path,
    relative: Any,
    what: str,
    fix: str,
    path: Path,
    index: int | str | None = None,
    key: str | None = None,
) -> Path:
    """``root / relative``: the one way a loader turns a recorded path into a file path. Refused (naming ``path``
    and the record) when ``relative`` is absolute, leaves ``root`` (``../../x.png``) or resolves outside it through
    a symlink (``cirbench.containment``), or when another ``key`` already named the same file. Pass one
    ``DataRoot`` for a whole split: its folders are resolved once and its files' keys remembered."""
    where = f"{path}: " + (f"record {index}: " if isinstance(index, int) else f"{index}: " if index else "")
    return contained(root, relative, what, where, fix, key)
