"""Integrity: the one place digests of files cirbench wrote are made and checked.

Why: a result, its rankings, a cache entry or a training run folder is read back later, maybe after a disk fault, a
bad copy or a hand edit; reading it without a check can give a silently wrong number. Everything here is generic:

* ``seal_json(mapping)`` returns the mapping with ``digest`` = sha256 of its canonical JSON without that field;
  ``check_sealed(mapping, path)`` raises a one-line ``IntegrityError`` naming the file when it no longer matches.
* ``file_sha256(path)`` (from ``cirbench.identity``) identifies a file's bytes; ``check_file(path, expected, what,
  fix)`` raises a one-line ``IntegrityError`` when the file is missing, unreadable or has other bytes.

The canonical JSON is ``identity.canonical_json`` after a JSON round trip (so tuples, paths and floats hash as they
are stored and read back).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cirbench.errors import IntegrityError
from cirbench.identity import canonical_json, file_sha256

__all__ = ["DIGEST_FIELD", "check_file", "check_sealed", "digest_of", "file_sha256", "is_sealed", "seal_json"]

DIGEST_FIELD = "digest"
_PREFIX = "sha256:"


def digest_of(mapping: Mapping[str, Any], field: str = DIGEST_FIELD) -> str:
    """``sha256:<hex>`` of the mapping's canonical JSON, leaving out ``field`` (the digest itself)."""
    body = {k: v for k, v in mapping.items() if k != field}
    body = json.loads(json.dumps(body, default=str))  # as it will be stored and read back
    return _PREFIX + hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def seal_json(mapping: Mapping[str, Any], field: str = DIGEST_FIELD) -> dict[str, Any]:
    """A copy of ``mapping`` carrying its own digest in ``field`` (any old digest is replaced)."""
    out = {k: v for k, v in mapping.items() if k != field}
    out[field] = digest_of(out, field)
    return out


def is_sealed(mapping: Any, field: str = DIGEST_FIELD) -> bool:
    return isinstance(mapping, Mapping) and field in mapping


def check_sealed(
    mapping: Mapping[str, Any],
    path: str | os.PathLike,
    fix: str = "delete it and compute it again",
    field: str = DIGEST_FIELD,
) -> None:
    """Raise ``IntegrityError`` unless ``mapping`` carries a digest in ``field`` that matches its content."""
    stored = mapping.get(field) if isinstance(mapping, Mapping) else None
    if not isinstance(stored, str) or not stored.startswith(_PREFIX):
        raise IntegrityError(f"{path}: no valid {field!r} field (the file is damaged or edited); {fix}")
    if stored != digest_of(mapping, field):
        raise IntegrityError(f"{path}: content does not match its digest (damaged or edited since written); {fix}")


def check_file(path: str | os.PathLike, expected_sha256: str, what: str = "file", fix: str = "") -> None:
    """Raise ``IntegrityError`` unless ``path`` exists and its bytes hash to ``expected_sha256`` (``sha256:`` prefix
    optional). ``what`` names the file's role in the message (``"stored rankings"``), ``fix`` says what to do."""
    path = Path(path)
    tail = f"; {fix}" if fix else ""
    expected = expected_sha256[len(_PREFIX) :] if expected_sha256.startswith(_PREFIX) else expected_sha256
    try:
        actual = file_sha256(path)
    except FileNotFoundError:
        raise IntegrityError(f"{path}: the {what} is missing{tail}") from None
    except OSError as error:
        raise IntegrityError(f"{path}: cannot read the {what} ({error.strerror or error}){tail}") from error
    if actual != expected:
        raise IntegrityError(f"{path}: the {what} does not match its recorded sha256 (damaged or edited){tail}")
