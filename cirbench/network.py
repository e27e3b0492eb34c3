"""No network unless asked: whether downloads are allowed, and the Hugging Face hubs' offline switches.

``huggingface_hub`` may contact the network before it looks in its cache unless its offline switch is set, and it
reads that switch at import time. So the CLI sets the switches before anything imports the hubs
(``offline_by_default``), and every hub call runs inside ``hub_access(allowed)``, which also sets the switches of
an already-imported ``huggingface_hub`` / ``datasets`` for the duration of the call.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
_USER_ENV = {name: os.environ.get(name) for name in OFFLINE_VARIABLES}  # before cirbench touched them


def user_asked_offline() -> bool:
    """The user set a hub's offline switch themselves: answer from the local Hugging Face cache."""
    return any(_USER_ENV.get(name) not in (None, "", "0") for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def downloads_allowed(flag: bool | None = None) -> bool:
    """``flag`` when given, else ``CIRBENCH_ALLOW_DOWNLOAD`` (unset or 0: no downloads)."""
    if flag is not None:
        return flag
    return os.environ.get("CIRBENCH_ALLOW_DOWNLOAD", "") not in ("", "0")


def offline_by_default() -> None:
    """Before the hubs are imported: turn their offline switches on unless downloads are allowed by the
    environment or the user set the switches themselves."""
    if not downloads_allowed():
        for name in OFFLINE_VARIABLES:
            os.environ.setdefault(name, "1")


def _set_imported_switches(offline: bool) -> dict[tuple[str, str], object]:
    """Set the offline constants of hub modules already imported; returns the old values."""
    old: dict[tuple[str, str], object] = {}
    for module_name, names in (
        ("huggingface_hub.constants", ("HF_HUB_OFFLINE",)),
        ("datasets.config", ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")),
    ):
        module = sys.modules.get(module_name)
        for name in names:
            if module is not None and hasattr(module, name):
                old[(module_name, name)] = getattr(module, name)
                setattr(module, name, offline)
    return old


@contextlib.contextmanager
def hub_access(allowed: bool) -> Iterator[None]:
    """Within the block the hubs may download only when ``allowed``; otherwise they answer from their caches."""
    env = {name: os.environ.get(name) for name in OFFLINE_VARIABLES}
    for name in OFFLINE_VARIABLES:
        os.environ[name] = "0" if allowed else "1"
    old = _set_imported_switches(not allowed)
    try:
        yield
    finally:
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for (module_name, name), value in old.items():
            setattr(sys.modules[module_name], name, value)
