"""Where cirbench keeps its caches: ``$CIRBENCH_CACHE``, else ``~/.cache/cirbench``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder (features, shapes renders, LinCIR mask caches, corpora)."""
    return Path(os.environ.get("CIRBENCH_CACHE", Path.home() / ".cache" / "cirbench")).expanduser()
