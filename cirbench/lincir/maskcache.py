"""Masks computed once per corpus and kept on disk as token ids, so training never runs spaCy per step.

Keyed by corpus hash + masking mode + spaCy pipeline (package, version, spaCy version) + tokenizer version. Layout
(all ``.npy``, memory-mapped on load; ids fit ``uint16`` because the vocabulary has 49,408 entries):

- ``orig_ids`` / ``orig_offsets``: each caption's original tokens (bos .. eos, unpadded);
- ``var_offsets``: caption i owns masked rows ``var_offsets[i] : var_offsets[i+1]``: one row, or one per
  ``caption.split(' ')`` position when upstream would draw a random word (drawn again at every visit);
- ``masked_ids`` / ``masked_offsets`` / ``masked_indicator``: the masked rows (placeholder = id 259) and
  upstream's indicator (0 for the ``a photo of $`` last resort).

Building runs the cleaning, spaCy (``nlp.pipe``) and tokenization in ``processes`` worker processes.

Integrity: ``meta.json`` is sealed (``integrity.seal_json``) and records each array file's sha256 (``sha256``);
opening a cache checks both, so a damaged or edited file is never trained on. ``build_mask_cache`` builds a damaged
cache again with a one-line note (same key, same masks); a prepared ``--masks`` folder that fails is refused
(``rundir.open_prepared_masks``). A cache written before caches carried digests is ``legacy``: the default location
builds it again, a prepared folder is used with a note (it cannot be rebuilt without its corpus).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cirbench.errors import IntegrityError
from cirbench.integrity import check_file, check_sealed, file_sha256, is_sealed, seal_json
from cirbench.io import atomic_directory, atomic_write_json, atomic_write_npy
from cirbench.lincir import tokenizer as tk
from cirbench.lincir.corpus import Corpus
from cirbench.lincir.masking import (
    DEFAULT_SPACY_MODEL,
    SpacyInfo,
    check_mode,
    clean_caption,
    keyword_spans,
    load_spacy,
    mask_variants,
    spacy_info,
)
from cirbench.progress import stage_progress

log = logging.getLogger("cirbench")
FORMAT_VERSION = 1
TOKENIZER_ID = "hf-CLIPTokenizer-4.36(sdxl tokenizer_2,+[$]->259)"
_FILES = ("orig_ids", "orig_offsets", "var_offsets", "masked_ids", "masked_offsets", "masked_indicator")


def mask_cache_key(corpus_hash: str, mode: str, info: SpacyInfo) -> str:
    payload = {
        "format": FORMAT_VERSION,
        "corpus": corpus_hash,
        "mode": mode,
        "spacy": info.key(),
        "disabled": sorted(info.disabled),
        "tokenizer": TOKENIZER_ID,
        "context": tk.CONTEXT_LENGTH,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


@dataclass
class _Chunk:
    """One worker's output, already packed as arrays (cheap to pickle, small in memory)."""

    orig_ids: np.ndarray  # uint16, flat
    orig_lengths: np.ndarray  # int64, one per caption
    var_counts: np.ndarray  # int64, masked rows per caption
    masked_ids: np.ndarray  # uint16, flat
    masked_lengths: np.ndarray  # int64, one per masked row
    indicators: np.ndarray  # uint8, one per masked row
    fallbacks: dict[str, int]

    def __len__(self) -> int:
        return len(self.orig_lengths)


_WORKER: dict[str, Any] = {}


def _init_worker(spacy_model: str, fast: bool, mode: str) -> None:
    _WORKER["nlp"], _ = load_spacy(spacy_model, fast=fast)
    _WORKER["mode"] = mode


def _spans(nlp: Any, cleaned: list[str]) -> list[list[Any]]:
    try:
        return [keyword_spans(doc) for doc in nlp.pipe(cleaned, batch_size=256)]
    except Exception:  # noqa: BLE001 - upstream treats a spaCy failure as "no keywords", per caption
        out = []
        for caption in cleaned:
            try:
                out.append(keyword_spans(nlp(caption)))
            except Exception:  # noqa: BLE001
                out.append([])
        return out


def _mask_chunk(captions: Sequence[str | None]) -> _Chunk:
    nlp, mode = _WORKER["nlp"], _WORKER["mode"]
    cleaned = [clean_caption(c) for c in captions]
    orig: list[int] = []
    orig_lengths, var_counts, masked_lengths = [], [], []
    masked: list[int] = []
    indicators: list[int] = []
    fallbacks = {"none": 0, "random-word": 0, "last-resort": 0}
    for caption, spans in zip(cleaned, _spans(nlp, cleaned), strict=True):
        variants = mask_variants(caption, spans, mode)
        orig.extend(variants[0].tokens)
        orig_lengths.append(len(variants[0].tokens))
        var_counts.append(len(variants))
        fallbacks[variants[0].fallback] += 1
        for v in variants:
            masked.extend(v.masked)
            masked_lengths.append(len(v.masked))
            indicators.append(v.indicator)
    return _Chunk(
        np.asarray(orig, dtype=np.uint16),
        np.asarray(orig_lengths, dtype=np.int64),
        np.asarray(var_counts, dtype=np.int64),
        np.asarray(masked, dtype=np.uint16),
        np.asarray(masked_lengths, dtype=np.int64),
        np.asarray(indicators, dtype=np.uint8),
        fallbacks,
    )


def _chunks(texts: Iterator[str | None], size: int) -> Iterator[list[str | None]]:
    batch: list[str | None] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class MaskCache:
    """Read-only view of a built mask cache; ``batch`` assembles padded (B, 77) id tensors."""

    def __init__(self, path: Path, fix: str = "build it again with `cirbench lincir prepare`"):
        self.path = Path(path)
        self.meta = json.loads((self.path / "meta.json").read_text())
        self.legacy = not is_sealed(self.meta)  # written before mask caches carried digests: not checked
        if not self.legacy:
            check_sealed(self.meta, self.path / "meta.json", fix)
            digests = self.meta.get("sha256")
            if not isinstance(digests, dict) or set(digests) != set(_FILES):
                raise IntegrityError(f"{self.path / 'meta.json'}: no digest for every array file; {fix}")
            for name in _FILES:
                check_file(self.path / f"{name}.npy", str(digests[name]), "mask cache array", fix)
        arrays = {name: np.load(self.path / f"{name}.npy", mmap_mode="r") for name in _FILES}
        self.orig_ids, self.orig_offsets = arrays["orig_ids"], arrays["orig_offsets"]
        self.var_offsets = arrays["var_offsets"]
        self.masked_ids, self.masked_offsets = arrays["masked_ids"], arrays["masked_offsets"]
        self.masked_indicator = arrays["masked_indicator"]

    def __len__(self) -> int:
        return len(self.orig_offsets) - 1

    @property
    def key(self) -> str:
        return str(self.meta["key"])

    def original(self, i: int) -> list[int]:
        return self.orig_ids[self.orig_offsets[i] : self.orig_offsets[i + 1]].tolist()

    def n_variants(self, indices: np.ndarray) -> np.ndarray:
        return self.var_offsets[indices + 1] - self.var_offsets[indices]

    def masked_row(self, i: int, variant: int = 0) -> list[int]:
        row = int(self.var_offsets[i]) + variant
        return self.masked_ids[self.masked_offsets[row] : self.masked_offsets[row + 1]].tolist()

    def variant_rows(self, indices: np.ndarray, draws: np.ndarray) -> np.ndarray:
        """Masked row of each caption for uniform ``draws`` in [0, 1): ``floor(u * n_variants)``."""
        counts = self.n_variants(indices)
        choice = np.minimum((draws * counts).astype(np.int64), counts - 1)
        return self.var_offsets[indices] + choice

    def batch(self, indices: np.ndarray, draws: np.ndarray | None = None, context: int = tk.CONTEXT_LENGTH):
        """(original ids, masked ids, indicators) as int64 tensors padded with 0 to ``context``."""
        import torch

        indices = np.asarray(indices, dtype=np.int64)
        draws = np.zeros(len(indices)) if draws is None else np.asarray(draws, dtype=np.float64)
        rows = self.variant_rows(indices, draws)
        orig = _gather_rows(self.orig_ids, self.orig_offsets, indices, context)
        masked = _gather_rows(self.masked_ids, self.masked_offsets, rows, context)
        return torch.from_numpy(orig), torch.from_numpy(masked), torch.from_numpy(self.masked_indicator[rows].copy())


def _gather_rows(ids: np.ndarray, offsets: np.ndarray, rows: np.ndarray, context: int) -> np.ndarray:
    """Rows ``ids[offsets[r]:offsets[r+1]]`` as an int64 (len(rows), context) array padded with 0 (one gather)."""
    starts = np.asarray(offsets[rows], dtype=np.int64)
    lengths = np.asarray(offsets[rows + 1], dtype=np.int64) - starts
    if len(lengths) and lengths.max() > context:  # cut rows would lose their EOT: the cache does not fit the context
        raise ValueError(f"a mask-cache row has {lengths.max()} tokens, more than the context length {context}")
    columns = np.arange(context, dtype=np.int64)
    inside = columns[None, :] < lengths[:, None]
    out = np.zeros((len(rows), context), dtype=np.int64)
    out[inside] = ids[(starts[:, None] + columns[None, :])[inside]]
    return out


def _offsets(lengths: list[np.ndarray]) -> np.ndarray:
    flat = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    offsets = np.zeros(len(flat) + 1, dtype=np.int64)
    np.cumsum(flat, out=offsets[1:])
    return offsets


def _write(path: Path, chunks: list[_Chunk], meta: dict[str, Any]) -> None:
    def cat(name: str, dtype: Any) -> np.ndarray:
        parts = [getattr(c, name) for c in chunks]
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)

    arrays = {
        "orig_ids": cat("orig_ids", np.uint16),
        "orig_offsets": _offsets([c.orig_lengths for c in chunks]),
        "var_offsets": _offsets([c.var_counts for c in chunks]),
        "masked_ids": cat("masked_ids", np.uint16),
        "masked_offsets": _offsets([c.masked_lengths for c in chunks]),
        "masked_indicator": cat("indicators", np.uint8),
    }
    for name, array in arrays.items():
        atomic_write_npy(path / f"{name}.npy", array)
    digests = {name: file_sha256(path / f"{name}.npy") for name in arrays}
    atomic_write_json(path / "meta.json", seal_json({**meta, "sha256": digests}), sort_keys=True)


def mask_cache_root() -> Path:
    from cirbench.paths import cache_root

    return cache_root() / "lincir" / "masks"


def _open_built(final: Path) -> MaskCache | None:
    """The cache in ``final`` when it verifies; None, with a one-line note, when it must be built again."""
    try:
        cache = MaskCache(final)
    except (OSError, ValueError, KeyError) as error:  # IntegrityError is a ValueError
        log.warning("cirbench: mask cache %s is damaged (%s); building it again", final, " ".join(str(error).split()))
        return None
    if cache.legacy:
        log.warning("cirbench: mask cache %s has no digests (an older cirbench); building it again", final)
        return None
    return cache


def build_mask_cache(
    corpus: Corpus,
    mode: str = "upstream",
    spacy_model: str = DEFAULT_SPACY_MODEL,
    processes: int = 1,
    fast_spacy: bool = True,
    root: Path | None = None,
    chunk_size: int = 2000,
    progress: bool = False,
    rebuild: bool = False,
) -> MaskCache:
    """Return the corpus' mask cache, building it (once) when absent; the folder appears whole or not at all."""
    check_mode(mode)
    info = spacy_info(spacy_model, fast=fast_spacy)
    key = mask_cache_key(corpus.hash, mode, info)
    root = Path(root) if root else mask_cache_root()
    final = root / key
    if (final / "meta.json").is_file() and not rebuild:
        cache = _open_built(final)
        if cache is not None:
            return cache
        rebuild = True
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    chunks: list[_Chunk] = []
    texts = _chunks(corpus.texts(), chunk_size)
    with stage_progress("masking", progress) as report:
        if processes <= 1:
            _init_worker(spacy_model, fast_spacy, mode)
            results: Iterator[_Chunk] = (_mask_chunk(c) for c in texts)
            pool = None
        else:
            import multiprocessing as mp

            pool = mp.get_context("spawn").Pool(processes, _init_worker, (spacy_model, fast_spacy, mode))
            results = pool.imap(_mask_chunk, texts)
        done = 0
        for chunk in results:
            chunks.append(chunk)
            done += len(chunk)
            if report is not None:
                report("captions", done, len(corpus))
        if pool is not None:
            pool.close()
            pool.join()
    fallbacks = {k: sum(c.fallbacks[k] for c in chunks) for k in ("none", "random-word", "last-resort")}
    meta = {
        "key": key,
        "format": FORMAT_VERSION,
        "corpus_hash": corpus.hash,
        "corpora": corpus.describe(),
        "captions": len(corpus),
        "mode": mode,
        "spacy": {**info.__dict__, "disabled": list(info.disabled)},
        "tokenizer": TOKENIZER_ID,
        "fallbacks": fallbacks,
        "build_seconds": round(time.perf_counter() - start, 3),
        "processes": processes,
    }
    if rebuild and final.exists():
        shutil.rmtree(final, ignore_errors=True)
    with atomic_directory(final) as tmp:
        _write(tmp, chunks, meta)
    return MaskCache(final)
