"""Device names: the one check of ``--device`` (eval, sensitivity, train) before any model is loaded.

Why: torch's own errors for a misspelt device (``Expected one of cpu, cuda, ...``) or a CUDA device on a machine
without one (``Found no NVIDIA driver``) arrive late and as internal errors; this says, in one line, which value is
wrong and what exists here.
"""

from __future__ import annotations

from cirbench.errors import OptionError, shown


def device_problem(name: str) -> str | None:
    """None when ``name`` is ``auto`` or a device torch can name (``cpu``, ``cuda``, ``cuda:1``, ``mps``), else why."""
    import torch

    if name == "auto":
        return None
    try:
        torch.device(name)
    except (RuntimeError, ValueError):
        return "is not a device; expected auto, cpu, cuda or cuda:N"
    return None


def available() -> str:
    """The devices this machine has, for messages (``cpu, cuda:0, cuda:1``)."""
    import torch

    names = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else ["cpu"]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return ", ".join(names)


def resolve_device(name: str, flag: str = "--device") -> str:
    """``auto`` -> ``cuda`` when present, else ``cpu``; any other name must exist on this machine (OptionError)."""
    import torch

    text = str(name).strip()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    problem = device_problem(text)
    if problem:
        raise OptionError(f"{flag} {shown(text)} {problem}")
    device = torch.device(text)
    missing = (
        (device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()))
        or (device.type == "mps" and not torch.backends.mps.is_available())
        or device.type not in ("cpu", "cuda", "mps")
    )
    if missing:
        raise OptionError(f"{flag} {text}: this machine has no such device (it has: {available()}); use --device auto")
    return text
