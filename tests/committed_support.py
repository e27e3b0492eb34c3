"""The repository's committed files, read as shipped: tests never see what a user's commands left in the work tree."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tracked_files(folder: str, root: Path = ROOT) -> list[str] | None:
    """The files under ``folder`` (relative to ``root``) that git tracks; None outside a git checkout (a source
    archive, which holds nothing else)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--", folder], capture_output=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    names = [name for name in out.decode().split("\0") if name]
    return names or None


def tracked_copy(folder: str, dest: Path, root: Path = ROOT) -> Path:
    """Copy the tracked files of ``folder`` (their work-tree contents: an edit being made is seen, an untracked
    result that `cirbench eval` or an older demo wrote is not) into ``dest``; returns ``dest``."""
    names = tracked_files(folder, root)
    if names is None:
        shutil.copytree(root / folder, dest)
        return dest
    for name in names:
        if (root / name).is_file():  # a tracked file deleted in the work tree is left out
            target = dest / Path(name).relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / name, target)
    return dest
