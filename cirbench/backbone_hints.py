"""What a backbone error suggests: what can run on this machine, found on disk without network.

Why: with no ``-b`` the error suggested ``ViT-L-14:openai``, which has no weights here, and ``-b shapes-clip:v3``
said "open_clip knows: none" while ``shapes-clip:v1`` and ``v2`` are installed. Suggestions now name the registered
backbones (served by code: the shapes CLIPs) first, then the open_clip ``MODEL:TAG`` whose weights are already in
the local caches (the Hugging Face hub cache, looked up by ``huggingface_hub.try_to_load_from_cache``, which reads
only the disk, and open_clip's ``~/.cache/clip`` for URL weights). The registered ids are passed in: this module sits
below ``backbones`` (which holds the registry) and imports nothing of cirbench.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path

MAX_LISTED = 6  # ids named in one message; the rest are counted
DOWNLOAD_HINT = "other open_clip MODEL:TAG ids need --allow-download once, on a machine with network"


def hub_files(hf_hub: str) -> tuple[str, list[str]]:
    """(repo id, the file names to try, in order) for open_clip's ``hf_hub`` field (``org/repo/`` or
    ``org/repo/file.bin``): a named ``.bin``/``.pth`` is tried as ``.safetensors`` first."""
    repo_id, filename = os.path.split(hf_hub)
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    if filename.endswith((".bin", ".pth")):
        names.insert(0, filename.rsplit(".", 1)[0] + ".safetensors")
    return repo_id, names


def cached_open_clip(hub_cache: str | None = None, clip_cache: Path | None = None) -> list[str]:
    """``MODEL:TAG`` of every open_clip pretrained whose weights file is in a local cache (no network):
    ``hub_cache`` (default: huggingface_hub's) and ``clip_cache`` (default: ``~/.cache/clip``)."""
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    clip_cache = Path(clip_cache or Path.home() / ".cache" / "clip")
    found = []
    for model, tag in open_clip.list_pretrained():
        cfg = open_clip.get_pretrained_cfg(model, tag)
        if cfg.get("hf_hub"):
            repo_id, names = hub_files(cfg["hf_hub"])
            cached = any(isinstance(try_to_load_from_cache(repo_id, n, cache_dir=hub_cache), str) for n in names)
        else:
            cached = bool(cfg.get("url")) and (clip_cache / os.path.basename(cfg["url"])).is_file()
        if cached or (cfg.get("file") and Path(cfg["file"]).is_file()):
            found.append(f"{model}:{tag}")
    return found


def _listed(ids: Sequence[str]) -> str:
    more = f" and {len(ids) - MAX_LISTED} more" if len(ids) > MAX_LISTED else ""
    return ", ".join(ids[:MAX_LISTED]) + more


def available_here(registered: Sequence[str]) -> str:
    """E.g. ``installed here: shapes-clip:v1, shapes-clip:v2; open_clip weights cached here: none (...)``."""
    cached = cached_open_clip()
    parts = [f"installed here: {_listed(registered)}"] if registered else []
    parts.append(f"open_clip weights cached here: {_listed(cached) if cached else 'none'}")
    return "; ".join(parts) + f"; {DOWNLOAD_HINT}"


def did_you_mean(wanted: str, known: Sequence[str]) -> str:
    """``did you mean A or B?`` over ``known`` (all of them when few, else the closest), or ``""``."""
    close = sorted(known) if len(known) <= 3 else difflib.get_close_matches(wanted, known, n=3, cutoff=0.5)
    return f"did you mean {' or '.join(close)}?" if close else ""


def unknown_tag(model: str, tag: str, registered: Sequence[str]) -> str:
    """The message for ``MODEL:TAG`` that neither a registered backbone nor open_clip knows."""
    import open_clip

    same_model = [r for r in registered if r.split(":", 1)[0] == model]
    known = same_model + [f"{model}:{t}" for t in open_clip.list_pretrained_tags_by_model(model)]
    hint = did_you_mean(f"{model}:{tag}", known) or available_here(registered)
    return f"unknown backbone {model}:{tag} (no registered backbone and no open_clip tag {tag!r}); {hint}"


def unknown_model(model: str, backbone_id: str, registered: Sequence[str]) -> str:
    """The message for an architecture neither a registered backbone nor open_clip knows."""
    import open_clip

    known = sorted({r.split(":", 1)[0] for r in registered} | set(open_clip.list_models()))
    hint = did_you_mean(model, known) or available_here(registered)
    return f"unknown open_clip architecture {model!r} in backbone id {backbone_id!r}; {hint}"
