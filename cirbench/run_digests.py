"""A training run folder's record of its files: the sha256 of each, written with it and checked before it is read.

Why: a resume or an evaluation reads ``state.pt``, ``config.json``, ``train_meta.json`` and the phi checkpoints
back, maybe after a disk fault, a bad copy or a hand edit; read unchecked, a flipped bit trains or evaluates on.
``run_digests.json`` (sealed with ``integrity.seal_json``) maps each file's path in the folder to its sha256. A file
being replaced is listed with its old and new digests until the new one is in place, so a run killed in between
(``kill -9``) leaves a folder whose every file still verifies. Only the process holding the run's writer lock
writes here (``lincir.rundir``); this module sits below ``methods`` so evaluation can check a run's checkpoint.

Legacy: a folder without ``run_digests.json`` was written before run folders recorded digests; it is read as before
(``is_legacy``), and resuming it records its files as found. A folder whose ``train_meta.json`` says it keeps
digests but has no ``run_digests.json`` is refused (the record was removed).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from cirbench.errors import IntegrityError
from cirbench.integrity import check_sealed, file_sha256, seal_json
from cirbench.io import atomic_write, atomic_write_json

MANIFEST = "run_digests.json"
SCHEMA = 1
_RECORDED = re.compile(
    r"^(config\.json|state\.pt|train_meta\.json|phi_last\.safetensors|phi_best\.safetensors"
    r"|checkpoints/phi_\d+\.safetensors)$"
)
FIX = "copy the run folder back from a backup, or start the run again with --overwrite"


def read(out: Path) -> dict[str, list[str]] | None:
    """The recorded digests (relative path -> accepted sha256s), or None for a legacy folder."""
    path = Path(out) / MANIFEST
    if not path.exists():
        meta = Path(out) / "train_meta.json"
        try:
            declared = json.loads(meta.read_text()).get("digests") if meta.is_file() else None
        except (OSError, ValueError, AttributeError):
            declared = None
        if declared:
            raise IntegrityError(f"{path} is missing but {meta} says the run records its files' digests; {FIX}")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise IntegrityError(f"{path}: unreadable ({' '.join(str(error).split())[:120]}); {FIX}") from error
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise IntegrityError(f"{path}: not a run folder's digest record; {FIX}")
    check_sealed(data, path, FIX)
    return {str(k): [str(d) for d in v] for k, v in data["files"].items() if isinstance(v, list)}


def is_legacy(out: Path) -> bool:
    return read(out) is None


def _write(out: Path, files: dict[str, list[str]]) -> None:
    atomic_write_json(Path(out) / MANIFEST, seal_json({"schema": SCHEMA, "files": dict(sorted(files.items()))}))


def write_bytes(out: Path, rel: str, data: bytes) -> Path:
    """Write ``out/rel`` atomically and record its digest (old and new accepted while it is replaced)."""
    out = Path(out)
    digest = hashlib.sha256(data).hexdigest()
    files = read(out) or {}
    previous = [d for d in files.get(rel, [])[-1:] if d != digest]
    files[rel] = [*previous, digest]
    _write(out, files)
    path = atomic_write(out / rel, data)
    files[rel] = [digest]
    _write(out, files)
    return path


def write_staged(out: Path, rel: str, write: Any) -> Path:
    """``write(path)`` writes a file (a library's own writer, e.g. phi's safetensors) to a staging name; its bytes
    then go in place through :func:`write_bytes`."""
    staged = Path(out) / rel
    staged = staged.with_name(f".{staged.name}.staged")
    try:
        write(staged)
        return write_bytes(out, rel, staged.read_bytes())
    finally:
        staged.unlink(missing_ok=True)


def adopt(out: Path) -> list[str]:
    """Record a legacy folder's run files as they are now (its first resume); returns them."""
    out = Path(out)
    found = sorted(
        rel
        for rel in (p.relative_to(out).as_posix() for p in [*out.glob("*"), *out.glob("checkpoints/*")] if p.is_file())
        if _RECORDED.match(rel)
    )
    _write(out, {rel: [file_sha256(out / rel)] for rel in found})
    return found


def verify(out: Path, rel: str) -> None:
    """Raise ``IntegrityError`` unless ``out/rel`` matches its recorded digest (a legacy folder: no check; a file the
    trainer does not record: no check)."""
    out = Path(out)
    files = read(out)
    if files is None or not _RECORDED.match(rel) or not (out / rel).exists():
        return
    if rel not in files:
        raise IntegrityError(f"{out / rel} is not in the run's digest record {out / MANIFEST}; {FIX}")
    if _sha256(out / rel) in files[rel]:
        return
    again = read(out) or {}  # a live run may have replaced the file since the record was read
    if _sha256(out / rel) not in again.get(rel, []):
        raise IntegrityError(
            f"{out / rel} is damaged or was edited since it was written (its sha256 differs from the one in "
            f"{MANIFEST}); {FIX}"
        )


def _sha256(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError as error:
        raise IntegrityError(f"{path}: cannot read it ({error.strerror or error}); {FIX}") from error


def run_folder_of(path: Path) -> tuple[Path, str]:
    """(run folder, path inside it) of a checkpoint: ``RUN/phi_*.safetensors`` or ``RUN/checkpoints/phi_*``."""
    path = Path(path)
    if path.parent.name == "checkpoints":
        return path.parent.parent, f"checkpoints/{path.name}"
    return path.parent, path.name


def checked_checkpoint(path: str | os.PathLike) -> Path:
    """``path`` after checking it, and its run's ``train_meta.json``, against the run's digests (evaluation calls
    this before hashing or loading a phi checkpoint)."""
    path = Path(path)
    out, rel = run_folder_of(path)
    verify(out, rel)
    verify(out, "train_meta.json")
    return path
