"""The one atomic writer, and JSON reading.

Every file cirbench writes (results, rankings, leaderboards, caches, checkpoints, masks, renders) goes through
:func:`atomic_write`: a temporary file in the same folder, written, flushed and fsynced, then ``os.replace``d
over the target, so a reader never sees half a file and an interrupted write leaves the old file intact. The
temporary file is removed on any error. Its mode follows the umask, as a plain ``open`` would give
(``tempfile.mkstemp`` would make every file 0600). :func:`atomic_directory` does the same for a folder that must
appear whole (a rendered gallery, a mask cache). The one exception is a log followed while it grows
(:func:`append_line`, a training run's ``metrics.jsonl``), which its writer rewrites atomically when it resumes.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import json
import os
import secrets
import shutil
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

Writer = Callable[[IO[bytes]], None]


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened or synced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def make_parent(path: Path) -> None:
    """``path``'s folder, made when missing; a file standing where a folder belongs is ENOTDIR naming that file
    (``mkdir`` says EEXIST, "it already exists", which points the wrong way)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as error:
        blocker = next((p for p in (path.parent, *path.parent.parents) if p.exists() and not p.is_dir()), path.parent)
        raise NotADirectoryError(errno.ENOTDIR, "a file is there, not a folder", str(blocker)) from error


def _naming(error: OSError, path: Path, operation: str, temp: Path | None = None) -> OSError:
    """``error`` naming the file the user asked for (not the temporary one, nor none: ``write()`` names no file)
    and the operation, so the CLI's one line says ``cannot write PATH: No space left on device``."""
    name = os.fsdecode(error.filename) if error.filename is not None else None
    if error.errno is not None and (name is None or (temp is not None and name.startswith(str(temp)))):
        final = str(path) if name is None else str(path) + name[len(str(temp)) :]
        error = OSError(error.errno, error.strerror, final)  # the same errno subclass (ENOSPC, EROFS, ...)
    elif name != str(path):
        return error  # another file (a folder above, a file the caller read): its own name and operation stand
    if getattr(error, "cirbench_operation", None) is None:
        error.cirbench_operation = operation  # type: ignore[attr-defined]
    return error


def atomic_write(path: str | os.PathLike, data: bytes | Writer) -> Path:
    """Write ``data`` (bytes, or a function that writes to a binary handle) to ``path`` atomically.

    An ``OSError`` (no space, read-only, permission, a folder in the way) names ``path`` and nothing half-written
    stays behind."""
    path = Path(path)
    tmp = _temp_name(path)
    try:
        make_parent(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & ~umask, as open() gives
    except OSError as error:
        raise _naming(error, path, "write", tmp) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, (bytes, bytearray, memoryview)):
                handle.write(data)
            else:
                data(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(error, OSError):
            raise _naming(error, path, "write", tmp) from None
        raise
    _fsync_dir(path.parent)
    return path


def ensure_writable(folder: str | os.PathLike) -> Path:
    """Preflight before long work (training, pretraining): ``folder`` exists and takes a file, or the ``OSError``
    names it (no space, read-only, permission, a file in the way), so nothing is computed only to be lost."""
    folder = Path(folder)
    try:
        atomic_write(folder / ".cirbench-write-test", b"").unlink()
    except OSError as error:
        if error.errno is None:
            raise
        raise _naming(OSError(error.errno, error.strerror), folder, "write") from None
    return folder


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, data)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2, sort_keys: bool = False) -> Path:
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=False)
    return atomic_write(path, (text + "\n").encode("utf-8"))


def append_line(path: str | os.PathLike, line: str) -> Path:
    """Append one line to a log that is read while it grows (a training run's ``metrics.jsonl``).

    Why not :func:`atomic_write`: rewriting a whole log at every step costs O(steps^2); one ``O_APPEND`` write of a
    short line lands whole, and a reader skips a last line cut short by a killed process. The mode follows the umask.
    """
    path = Path(path)
    try:
        make_parent(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
        finally:
            os.close(fd)
    except OSError as error:
        raise _naming(error, path, "write") from None
    return path


def atomic_write_json_gz(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write(path, gzip.compress(json.dumps(obj, separators=(",", ":")).encode("utf-8"), mtime=0))


def atomic_write_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    return atomic_write(path, lambda handle: np.save(handle, array))


def atomic_write_torch(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` through the atomic writer (checkpoints, resume state)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, buffer.getvalue())


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final``; when the block succeeds it is renamed to ``final``.

    When ``final`` already exists at that point (another process won the race), the new folder is discarded.
    On error the temporary folder is removed. Its mode follows the umask (``mkdtemp`` would make it 0700).
    """
    final = Path(final)
    tmp = _temp_name(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(tmp, 0o777)
    except OSError as error:
        raise _naming(error, final, "write", tmp) from None
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():  # not a lost race with another process: a real error
                raise
        else:
            _fsync_dir(final.parent)
    except OSError as error:  # a file written inside is named by its final path
        raise _naming(error, final, "write", tmp) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file (``.gz`` transparently).

    A file that cannot be parsed (cut short, damaged, not UTF-8) is a ``ValueError`` saying so, whatever layer
    found it (gzip's ``EOFError`` and ``zlib.error`` included); an ``OSError`` names the file."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                return json.load(handle)
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise ValueError(f"truncated or damaged gzip data ({error or type(error).__name__})") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise _naming(error, path, "read") from None
