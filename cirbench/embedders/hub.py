"""Where a Hugging Face embedder's weights come from: a local folder, or a hub id answered from the local cache.

A hub id is looked up in the local Hugging Face cache with the offline switches set; it is downloaded only when the
user passes ``--allow-download`` (``network.hub_access``). The weights identity is known without loading anything:
a folder is hashed (its config, processor, tokenizer and weight files), a hub id is ``<id>@<commit>``, the commit
being the pinned ``revision`` or the one the local cache holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cirbench.errors import BackboneError, OptionError, shown
from cirbench.identity import file_sha256, short_hash
from cirbench.network import hub_access
from cirbench.weight_errors import library_errors

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
HASHED_SUFFIXES = (".json", ".safetensors", ".bin", ".txt", ".model", ".jinja")
PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass(frozen=True)
class ModelSource:
    """What ``-o model=... -o revision=...`` names: a local ``folder`` or a ``hub_id`` (at ``revision``)."""

    given: str
    folder: Path | None = None
    hub_id: str | None = None
    revision: str | None = None

    @property
    def name(self) -> str:
        return self.hub_id or (self.folder.name if self.folder else self.given)


def parse_source(model: str | None, revision: str | None, option: str = "model") -> ModelSource:
    """A folder when the path exists, else a hub id ``owner/name``; anything else is one ``OptionError``."""
    if not model:
        raise OptionError(f"option {option} is required: a local model folder or a Hugging Face hub id (owner/name)")
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise OptionError(
                f"{option}={shown(model)} is not a Hugging Face model folder (no config.json or adapter_config.json "
                "in it); pass the folder save_pretrained wrote, or a hub id"
            )
        if revision:
            raise OptionError(f"revision={shown(revision)} applies to a hub id, not to the local folder {path}")
        return ModelSource(model, folder=path.resolve())
    if not HUB_ID.match(model):
        raise OptionError(
            f"{option}={shown(model)} is neither an existing folder nor a Hugging Face hub id (owner/name); "
            "check the path"
        )
    return ModelSource(model, hub_id=model, revision=revision or None)


def folder_digest(folder: Path) -> str:
    """One sha256 over the names and bytes hashes of the folder's config, processor, tokenizer and weight files."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(HASHED_SUFFIXES))
    if not files:
        raise BackboneError(f"model folder {folder} holds no config or weight files")
    return "sha256:" + short_hash([[p.name, file_sha256(p)] for p in files], length=64)


def _cached_snapshot(hub_id: str, revision: str | None, allow_download: bool) -> Path:
    from huggingface_hub import snapshot_download

    with hub_access(allow_download):
        return Path(snapshot_download(repo_id=hub_id, revision=revision, local_files_only=not allow_download))


def weights_id(source: ModelSource) -> str:
    """The weights' identity without loading them (see module docstring)."""
    if source.folder is not None:
        return folder_digest(source.folder)
    assert source.hub_id is not None
    if source.revision and COMMIT.match(source.revision):
        return f"{source.hub_id}@{source.revision}"
    try:
        commit = _cached_snapshot(source.hub_id, source.revision, False).name
    except Exception:  # noqa: BLE001 - not cached yet: named by the branch, resolved to a commit once downloaded
        return f"{source.hub_id}@{source.revision or 'main'}(unpinned)"
    return f"{source.hub_id}@{commit}"


def local_folder(source: ModelSource, allow_download: bool) -> Path:
    """The folder to load: the user's, or the hub id's snapshot (downloaded only when ``allow_download``)."""
    if source.folder is not None:
        return source.folder
    assert source.hub_id is not None
    try:
        return _cached_snapshot(source.hub_id, source.revision, allow_download)
    except Exception as error:  # noqa: BLE001 - one line, naming the id and the fix
        at = f" at revision {source.revision}" if source.revision else ""
        if not allow_download:
            raise BackboneError(
                f"weights for {source.hub_id}{at} are not in the local Hugging Face cache; run once with "
                "--allow-download (or set CIRBENCH_ALLOW_DOWNLOAD=1) on a machine with network, or pass a local "
                "folder as -o model=/path/to/folder"
            ) from error
        raise BackboneError(f"cannot download {source.hub_id}{at}: {type(error).__name__}: {error}") from error


def torch_dtype(precision: str) -> Any:
    import torch

    return getattr(torch, PRECISIONS[precision])


def from_pretrained(cls: Any, folder: Path, what: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained(folder)`` offline, a library failure as one ``BackboneError`` line."""
    with hub_access(False), library_errors(BackboneError, what, folder, fix="check the folder holds that model"):
        return cls.from_pretrained(str(folder), **kwargs)
