"""A benchmark-fixed prompt: where a protocol prescribes the whole sentence a pseudo-word method encodes.

Most benchmarks give a modification text and each pseudo-word method (Pic2Word, SEARLE, LinCIR) wraps it in its own
template. Pic2Word's ImageNet-R and COCO evaluations instead fix the sentence itself, with the image's pseudo word
inside it ("a cartoon of *", "a photo of * and dog and cat", BASELINES.md §1.4). Such a benchmark puts that
sentence in the declared ``Query.prompt`` field with ``IMAGE_SLOT`` where the pseudo word goes; a pseudo-word method
replaces the slot by its own placeholder and uses the sentence instead of its template. Methods without a pseudo word
keep encoding ``Query.texts`` (the protocol's text-only sentence).
"""

from __future__ import annotations

from cirbench.benchmarks.base import Query

IMAGE_SLOT = "{image}"


def fixed_prompt(query: Query, placeholder: str) -> str | None:
    """The benchmark's sentence for ``query`` with ``placeholder`` in the image slot; None when it fixes none."""
    if query.prompt is None:
        return None
    return query.prompt.replace(IMAGE_SLOT, placeholder)
