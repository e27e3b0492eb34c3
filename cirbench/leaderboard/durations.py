"""Training times as a leaderboard shows them: a number means little without the device type and count beside it."""

from __future__ import annotations

import re


def format_duration(seconds: float) -> str:
    """Seconds -> "42 s", "3.1 min", "2.5 h" (what a paper's training-time column says)."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_train_time(seconds: float | None, device: str | None, count: int | None) -> str | None:
    """ "3.1 min, 1× cpu": a training time means little without the device type and count beside it."""
    if seconds is None:
        return None
    text = format_duration(float(seconds))
    if device:
        device = re.sub(r"^NVIDIA\s+", "", str(device))
        text += f", {int(count or 1)}× {device}"
    return text
