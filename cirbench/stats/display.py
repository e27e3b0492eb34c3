"""How an interval is written, everywhere (``stats``, ``compare``, ``sensitivity``, the leaderboard's ``--ci``).

``± h`` is only shown when it says the same as ``[lo, hi]``: an interval that is asymmetric around its value beyond
the displayed rounding (a rare hit rate's [0.45, 4.55] around 2.27, not 2.27 ± 2.05) is written with its ends.
"""

from __future__ import annotations

import math


def is_symmetric(value: float, lo: float, hi: float, digits: int = 2) -> bool:
    """Whether ``value - lo`` and ``hi - value`` are equal at ``digits`` decimals."""
    return f"{value - lo:.{digits}f}" == f"{hi - value:.{digits}f}"


def format_interval(value: float, lo: float, hi: float, digits: int = 2, *, signed: bool = False) -> str:
    """``"54.32 ± 1.50"`` when symmetric at this rounding, else ``"2.27 [0.45, 4.55]"``; ``signed`` writes ``+``
    on positive numbers (differences). No interval (NaN ends): the value alone; no value: ``"[lo, hi]"``; neither:
    ``"–"``."""
    sign = "+" if signed else ""

    def num(x: float) -> str:
        return f"{x:{sign}.{digits}f}"

    has_value, has_ends = not math.isnan(value), not (math.isnan(lo) or math.isnan(hi))
    if not has_ends:
        return num(value) if has_value else "–"
    ends = f"[{num(lo)}, {num(hi)}]"
    if not has_value:
        return ends
    if is_symmetric(value, lo, hi, digits):
        return f"{num(value)} ± {value - lo:.{digits}f}"
    return f"{num(value)} {ends}"
