"""Slerp (Jang et al., ECCV 2024): spherical interpolation from the image feature towards the text feature.

Training-free, frozen CLIP, no prompt template: the query is ``Slerp(v, w; alpha)`` of the normalised reference
image feature ``v`` and the normalised feature ``w`` of the modification text as the benchmark gives it; ``alpha``
is the text weight (0: the image, 1: the text). The formula is the official ``slerp.py#L3-L22``
(youngkyunJang/SLERP-TAT, MORE_BENCHMARKS_AND_METHODS.md §D.1): ``[sin((1-a)θ) v + sin(aθ) w] / sin θ``,
re-normalised, with ``θ = arccos(v·w)`` and the linear branch ``normalise((1-a) v + a w)`` when ``|v·w| > 0.9995``.
Two harness guards from §D.1: the inputs are normalised first and ``v·w`` is clamped to [-1, 1] before ``arccos``.
Where one coefficient is exactly 0 the other is exactly 1, so the result already is the unit input: it is returned
as is (re-normalising a unit vector is a no-op in exact arithmetic but moves its last bits), which keeps alpha = 0
and 1 bit-identical to image-only and text-only. The official "Slerp + TAT" results also tune the image tower
(TAT); this is Slerp alone. Alpha per benchmark (CIRR 0.9, CIRCO and FashionIQ 0.8; §D.2, a secondary summary of
the paper) is declared on its entry (``benchmark_defaults``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cirbench.benchmarks.base import Query
from cirbench.methods import METHODS
from cirbench.methods.base import BATCH_SIZE, CAPTION_JOIN, MethodEntry
from cirbench.methods.baselines import _Baseline
from cirbench.options import Option

PARALLEL = 0.9995  # |v·w| above which the official code switches to linear interpolation
DEFAULT_ALPHA = 0.8


def slerp(image: torch.Tensor, text: torch.Tensor, alpha: float, parallel: float = PARALLEL) -> torch.Tensor:
    """Row-wise spherical interpolation of *unit* rows (as the official code assumes), ``alpha`` towards ``text``."""
    dot = (image * text).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    theta = torch.arccos(dot)
    sine = torch.sin(theta)
    a = torch.sin((1.0 - alpha) * theta) / sine
    b = torch.sin(alpha * theta) / sine
    linear = dot.abs() > parallel
    a = torch.where(linear, torch.full_like(a, 1.0 - alpha), a)
    b = torch.where(linear, torch.full_like(b, alpha), b)
    mixed = F.normalize(a * image + b * text, dim=-1)
    return torch.where(b == 0, image, torch.where(a == 0, text, mixed))


def slerp_weight(theta: torch.Tensor, alpha: float) -> torch.Tensor:
    """The text weight ``β`` of the weighted similarity sum that Slerp ranks like (§D.3): ``sin(αθ) / (sin((1-α)θ)
    + sin(αθ))``; the gallery order of a query equals that of ``(1-β) s_image + β s_text``."""
    return torch.sin(alpha * theta) / (torch.sin((1.0 - alpha) * theta) + torch.sin(alpha * theta))


class Slerp(_Baseline):
    """Slerp from the normalised image feature to the normalised text feature (text weight ``alpha``)."""

    def __init__(self, backbone: Any, options: Mapping[str, Any]):
        super().__init__("slerp", backbone, options)
        self.alpha = float(self.options["alpha"])

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "formula": "slerp(normalise(image), normalise(text); alpha), official slerp.py (linear if |cos|>0.9995)",
            "text": "the benchmark's modification text encoded alone (no template)",
        }

    def encode_queries(self, queries: Sequence[Query], texts: Sequence[Sequence[str]], reference_features):
        image = F.normalize(reference_features.float(), dim=-1)  # exactly image-only's query
        return slerp(image, self._text_features(texts, reference_features), self.alpha)


def _at_most_one(value: float) -> str | None:
    return None if value <= 1.0 else "a number in [0, 1] (0: image only, 1: text only)"


def build_slerp(backbone: Any, checkpoint: Path | None, options: Mapping[str, Any]) -> Slerp:
    return Slerp(backbone, options)


METHODS.register(
    MethodEntry(
        name="slerp",
        factory=build_slerp,
        description="Slerp (ECCV 2024, training-free): image -> text by alpha (CIRR 0.9, CIRCO and FashionIQ 0.8)",
        options=(
            Option(
                "alpha",
                "float",
                DEFAULT_ALPHA,
                "text weight (0 image, 1 text); per benchmark: CIRR 0.9, CIRCO and FashionIQ 0.8",
                minimum=0,
                check=_at_most_one,
            ),
            CAPTION_JOIN,
            BATCH_SIZE,
        ),
        # The published alpha per benchmark (MORE_BENCHMARKS_AND_METHODS.md §D.2); a user's alpha overrides it.
        benchmark_defaults={"cirr": {"alpha": 0.9}, "circo": {"alpha": 0.8}, "fashioniq": {"alpha": 0.8}},
    )
)
