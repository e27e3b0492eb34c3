"""Caption grammar and modification texts for the shapes world.

Captions vary wording (synonyms, prefixes, word order, relative clauses) and are often partial ("red
circle"), so the tiny CLIP learns attributes rather than strings and LinCIR's text-only corpus looks like real
captions. Modification texts come in two styles reported separately by the benchmark: CSS-like imperatives,
whose command words never occur in captions, and descriptive predicates ("is blue"), which read like caption
fragments.
Everything is deterministic given a ``numpy`` generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cirbench.io import atomic_write_text
from cirbench.shapes.world import (
    ATTRIBUTES,
    COLORS,
    POSITIONS,
    SALT_CORPUS,
    SHAPES,
    SIZES,
    Attributes,
    all_attributes,
    rng_for,
)

COLOR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet"),
    "orange": ("orange", "tangerine"),
    "yellow": ("yellow", "golden"),
    "green": ("green", "emerald"),
    "cyan": ("cyan", "turquoise"),
    "blue": ("blue", "azure"),
    "purple": ("purple", "violet"),
    "white": ("white", "ivory"),
}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disk", "dot"),
    "square": ("square", "block"),
    "triangle": ("triangle",),
    "star": ("star",),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "large": ("large", "big", "huge"),
}
# Location nouns ("move it to the top left") and full phrases ("in the top left") per grid position.
POSITION_NOUNS: dict[str, tuple[str, ...]] = {
    "top left": ("top left", "upper left", "top left corner"),
    "top": ("top", "top center", "top middle"),
    "top right": ("top right", "upper right", "top right corner"),
    "left": ("left", "left side", "middle left"),
    "center": ("center", "middle"),
    "right": ("right", "right side", "middle right"),
    "bottom left": ("bottom left", "lower left", "bottom left corner"),
    "bottom": ("bottom", "bottom center", "bottom middle"),
    "bottom right": ("bottom right", "lower right", "bottom right corner"),
}
_SIDE = {"left", "right", "left side", "right side"}
_EDGE = {"top", "bottom"}

GENERIC_NOUNS = ("shape", "object", "thing")
PREFIXES = ("", "", "a photo of ", "an image of ", "a picture of ", "a drawing of ", "a rendering of ")
# Words methods commonly put around captions or pseudo tokens; kept in the shipped vocabulary.
PROMPT_WORDS = (
    "a",
    "an",
    "the",
    "photo",
    "image",
    "picture",
    "of",
    "that",
    "is",
    "with",
    "and",
    "which",
    ",",
    ".",
)


def position_phrases(position: str) -> tuple[str, ...]:
    """Every prepositional phrase for a grid position, e.g. "in the upper left", "on the left side"."""
    phrases = []
    for noun in POSITION_NOUNS[position]:
        if noun in _SIDE:
            phrases.append(f"on the {noun}")
        elif noun in _EDGE:
            phrases.append(f"at the {noun}")
        else:
            phrases.append(f"in the {noun}")
    return tuple(phrases)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


@dataclass(frozen=True)
class Caption:
    """A caption and the attributes it actually mentions (the others are unspecified, not false)."""

    text: str
    mentions: dict[str, str]

    def matches(self, attrs: Attributes) -> bool:
        return all(getattr(attrs, name) == value for name, value in self.mentions.items())


def caption(attrs: Attributes, rng: np.random.Generator, partial: float = 0.4) -> Caption:
    """One random caption of ``attrs``; with probability ``partial`` it mentions only 1–3 attributes."""
    if rng.random() < partial:
        count = int(rng.integers(1, 4))
        names = [ATTRIBUTES[i] for i in sorted(rng.choice(4, size=count, replace=False))]
    else:
        names = list(ATTRIBUTES)
    mentions = {name: getattr(attrs, name) for name in names}
    size = _pick(rng, SIZE_WORDS[attrs.size]) if "size" in mentions else None
    color = _pick(rng, COLOR_WORDS[attrs.color]) if "color" in mentions else None
    noun = _pick(rng, SHAPE_WORDS[attrs.shape]) if "shape" in mentions else _pick(rng, GENERIC_NOUNS)
    where = _pick(rng, position_phrases(attrs.position)) if "position" in mentions else None

    adjectives = [w for w in (size, color) if w]
    predicate = None
    if adjectives and rng.random() < 0.15:  # "a circle that is red" / "a red circle which is big"
        predicate = adjectives.pop(int(rng.integers(len(adjectives))))
    phrase = " ".join([*adjectives, noun])
    if predicate:
        phrase += f" {_pick(rng, ('that is', 'which is'))} {predicate}"
    prefix = _pick(rng, PREFIXES)
    if prefix or rng.random() < 0.7:
        phrase = f"{_article(phrase)} {phrase}"
    if where and rng.random() < 0.2:
        text = f"{prefix}{where}, {phrase}" if not prefix else f"{prefix}{phrase} {where}"
    elif where:
        text = f"{prefix}{phrase} {where}"
    else:
        text = f"{prefix}{phrase}"
    return Caption(text=text, mentions=mentions)


def canonical_caption(attrs: Attributes) -> str:
    """The fixed full caption for zero-shot accuracy: "a photo of a large red circle in the top left"."""
    phrase = f"{attrs.size} {attrs.color} {attrs.shape}"
    return f"a photo of {_article(phrase)} {phrase} {position_phrases(attrs.position)[0]}"


def modification_text(attribute: str, value: str, style: str, rng: np.random.Generator) -> str:
    """Text asking for ``attribute`` to become ``value``: an ``imperative`` or a ``descriptive`` predicate."""
    if style not in ("imperative", "descriptive"):
        raise ValueError(f"unknown style {style!r}; use 'imperative' or 'descriptive'")
    imperative = style == "imperative"
    if attribute == "color":
        word = _pick(rng, COLOR_WORDS[value])
        options = (
            (f"make it {word}", f"change the color to {word}", f"paint it {word}", f"turn it {word}")
            if imperative
            else (f"is {word}",)
        )
    elif attribute == "shape":
        word = _pick(rng, SHAPE_WORDS[value])
        article = _article(word)
        options = (
            (f"turn it into {article} {word}", f"make it {article} {word}", f"change it to {article} {word}")
            if imperative
            else (f"is {article} {word}",)
        )
    elif attribute == "size":
        comparative = "smaller" if value == "small" else "bigger"
        word = _pick(rng, SIZE_WORDS[value])
        verb = "shrink it" if value == "small" else "enlarge it"
        options = (
            (f"make it {comparative}", f"make it {word}", verb) if imperative else (f"is {word}", f"is {comparative}")
        )
    elif attribute == "position":
        noun = _pick(rng, POSITION_NOUNS[value])
        phrase = _pick(rng, position_phrases(value))
        options = (
            (f"move it to the {noun}", f"put it {phrase}", f"place it {phrase}") if imperative else (f"is {phrase}",)
        )
    else:
        raise ValueError(f"unknown attribute {attribute!r}")
    return _pick(rng, options)


def vocabulary_texts() -> list[str]:
    """Every word the grammar can produce (captions, both modification styles, prompt words) as texts."""
    texts: list[str] = list(PROMPT_WORDS) + list(GENERIC_NOUNS) + [p.strip() for p in PREFIXES if p]
    for table in (COLOR_WORDS, SHAPE_WORDS, SIZE_WORDS, POSITION_NOUNS):
        for words in table.values():
            texts.extend(words)
    texts.extend(phrase for position in POSITIONS for phrase in position_phrases(position))
    rng = np.random.default_rng(0)
    for attribute, values in (("color", COLORS), ("shape", SHAPES), ("size", SIZES), ("position", POSITIONS)):
        for value in values:
            for style in ("imperative", "descriptive"):
                texts.extend(modification_text(attribute, value, style, rng) for _ in range(40))
    texts.extend(["that is", "which is", "smaller", "bigger", "shrink", "enlarge", "color"])
    return sorted(set(texts))


def corpus_captions(n: int, seed: int = 0) -> list[str]:
    """``n`` captions of uniformly drawn attribute combinations (text only: no image is rendered)."""
    combos = all_attributes()
    rng = rng_for(SALT_CORPUS, seed)
    picks = rng.integers(len(combos), size=n)
    return [caption(combos[int(i)], rng).text for i in picks]


def write_corpus(path: str | Path, n: int = 100_000, seed: int = 0) -> Path:
    """Write a LinCIR text corpus (one caption per line) atomically; same ``n`` and ``seed``, same file."""
    return atomic_write_text(path, "".join(f"{line}\n" for line in corpus_captions(n, seed)))
