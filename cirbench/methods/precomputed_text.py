"""Evaluate an LLM-based method's released target texts (LDRE, CIReVL, ...) with any CLIP backbone, no LLM run.

Such methods caption the reference image, have an LLM rewrite the caption with the modification, and retrieve the
gallery with the text tower alone. When the authors release those texts per query, this adapter encodes them and
ranks by cosine, exactly as ``text-only`` ranks a caption: a file that holds the plain captions gives text-only's
numbers bit for bit. Several texts for one query (LDRE's ensemble) are encoded one by one and their normalised
features averaged (then normalised).

The texts file is passed as ``--checkpoint`` because it plays a checkpoint's role: its sha256 is the method's
identity in the run key, and its path, format and provenance are recorded in every result. Accepted formats:

- ``cirbench-texts/1``: ``{"format": "cirbench-texts/1", "texts": {"<query id>": "text" | ["text", ...]}, ...}``,
  every other top-level key (``method``, ``generator``, ``source``, ``license``, ...) being provenance;
- a plain JSON object ``{"<query id>": "text" | [...]}`` (provenance: not stated);
- a JSON list of records, read through the ``id_field`` and ``text_field`` options.

Query ids are cirbench's (CIRCO: the query id; CIRR: the pair id; see ``docs/BASELINES.md``). A query the file
does not cover is an error naming the file, never a silent fallback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cirbench.benchmarks.annotations import read_annotation_json
from cirbench.benchmarks.base import Query
from cirbench.errors import MethodError, shown
from cirbench.identity import file_sha256
from cirbench.methods import METHODS
from cirbench.methods.base import BATCH_SIZE, MethodEntry, MethodInfo
from cirbench.methods.baselines import _Baseline
from cirbench.options import Option

FORMAT = "cirbench-texts/1"
FIX = "see docs/BASELINES.md (precomputed-text) for the accepted formats"
MAX_BYTES = 64 << 20  # 64 MiB: LDRE's CIRR test texts (4,148 queries x 15 texts) are about 6 MB


@dataclass(frozen=True)
class TextsFile:
    """The texts per query id, how the file was read, and what it says about where the texts come from."""

    path: Path
    texts: dict[str, tuple[str, ...]]
    format: str
    provenance: dict[str, Any]


def _query_id(value: Any, path: Path, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip():
        raise MethodError(
            f"{path}: {where}: a query id must be a non-empty string or an integer, got {shown(value)}; {FIX}"
        )
    return str(value).strip()


def _texts(value: Any, path: Path, qid: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(t, str) and t.strip() for t in items):
        raise MethodError(
            f"{path}: query {qid:.80}: expected a non-empty text or a non-empty list of texts, got {shown(value)}; "
            f"{FIX}"
        )
    return tuple(items)


def read_texts_file(path: Path, id_field: str = "id", text_field: str = "text") -> TextsFile:
    """Parse a texts file (any accepted format) strictly: bad ids, empty texts and repeated ids are refused."""
    raw = read_annotation_json(Path(path), FIX, MAX_BYTES)  # size, UTF-8 (a BOM dropped), a key twice, NaN
    pairs: list[tuple[Any, Any]] = []
    if isinstance(raw, dict) and "format" in raw:
        if raw["format"] != FORMAT or not isinstance(raw.get("texts"), dict):
            raise MethodError(f"{path}: 'format' must be {FORMAT!r} with a 'texts' object; {FIX}")
        fmt, provenance = FORMAT, {k: v for k, v in raw.items() if k not in ("format", "texts")}
        pairs = list(raw["texts"].items())
    elif isinstance(raw, dict):
        fmt, provenance, pairs = "plain mapping", {}, list(raw.items())
    elif isinstance(raw, list):
        fmt, provenance = f"records (id_field={id_field}, text_field={text_field})", {}
        for i, record in enumerate(raw):
            if not isinstance(record, dict) or id_field not in record or text_field not in record:
                raise MethodError(
                    f"{path}: record {i} lacks {id_field!r} or {text_field!r}; set -o id_field=... -o text_field=..."
                )
            pairs.append((record[id_field], record[text_field]))
    else:
        raise MethodError(f"{path}: expected a JSON object or a list of records, got {type(raw).__name__}; {FIX}")
    texts: dict[str, tuple[str, ...]] = {}
    for key, value in pairs:
        qid = _query_id(key, path, "a key")
        if qid in texts:
            raise MethodError(f"{path}: query {qid:.80} appears twice; keep one entry per query")
        texts[qid] = _texts(value, path, qid)
    if not texts:
        raise MethodError(f"{path}: the file holds no texts; {FIX}")
    return TextsFile(Path(path), texts, fmt, provenance)


class PrecomputedText(_Baseline):
    """Text-to-image retrieval with released per-query texts instead of the benchmark's modification text."""

    def __init__(self, backbone: Any, source: TextsFile, options: Mapping[str, Any]):
        super().__init__("precomputed-text", backbone, options)
        self.source = source
        self.sha256 = file_sha256(source.path)
        generator = source.provenance.get("generator")
        data = f"texts generated by {generator}" if generator else "precomputed texts (generator not stated)"
        self.info = MethodInfo(
            name="precomputed-text",
            variant=str(source.provenance.get("method", "")),
            training_data=f"none ({data})",
            checkpoint=str(source.path),
            checkpoint_id=self.sha256,
        )
        self.used = 0

    def describe(self) -> dict[str, Any]:
        widest = max(len(v) for v in self.source.texts.values())
        return {
            "texts_file": str(self.source.path),
            "texts_sha256": self.sha256,
            "format": self.source.format,
            "provenance": self.source.provenance or "not stated in the file",
            "queries_in_file": len(self.source.texts),
            "queries_used": self.used,
            "texts_per_query": widest,
            "encoding": "each text alone through the text tower; several per query: normalised features averaged",
        }

    def check_queries(self, queries: Sequence[Query]) -> None:
        """Every query needs a text; called by the engine before any image is encoded."""
        missing = [q.qid for q in queries if q.qid not in self.source.texts]
        if missing:
            known = ", ".join(list(self.source.texts)[:3])
            raise MethodError(
                f"{self.source.path}: no text for {len(missing)} of {len(queries)} queries, e.g. {missing[:3]} "
                f"(the file's ids look like: {known}); use a file made for this benchmark and split"
            )

    def check_split(self, queries: Sequence[Query]) -> None:
        """Every id in the file is a query of the split (all of its queries, before ``--limit`` or
        ``--skip-missing``): a file made for another split or benchmark whose ids happen to cover this one's (CIRCO
        val 0-219 inside test 0-799, CIRR val and test pair ids) would otherwise give other queries' texts silently.
        Ids of a part the protocol options left out (``shirt/3`` with ``-p categories=dress``) are allowed."""
        ids = {q.qid for q in queries}
        parts = {q.qid.split("/", 1)[0] for q in queries if "/" in q.qid}
        unknown = [i for i in self.source.texts if i not in ids and ("/" not in i or i.split("/", 1)[0] in parts)]
        if unknown:
            raise MethodError(
                f"{self.source.path}: {len(unknown)} ids are not queries of this split, e.g. "
                f"{', '.join(shown(i) for i in unknown[:3])} (the split's ids look like: "
                f"{', '.join(shown(q.qid) for q in queries[:3])}); the file was made for another benchmark or split: "
                "use the one made for this split, or remove those ids"
            )

    def encode_queries(self, queries: Sequence[Query], texts: Sequence[Sequence[str]], reference_features):
        self.check_queries(queries)
        self.used += len(queries)
        variants = [list(self.source.texts[q.qid]) for q in queries]
        return self._text_features(variants, reference_features)


def build_precomputed_text(backbone: Any, checkpoint: Path | None, options: Mapping[str, Any]) -> PrecomputedText:
    source = read_texts_file(Path(checkpoint), options["id_field"], options["text_field"])
    return PrecomputedText(backbone, source, options)


METHODS.register(
    MethodEntry(
        name="precomputed-text",
        factory=build_precomputed_text,
        description="released LLM target texts per query (LDRE, CIReVL, ...) encoded by the CLIP text tower",
        options=(
            Option("id_field", "str", "id", "records format: the field holding the query id"),
            Option("text_field", "str", "text", "records format: the field holding the text(s)"),
            BATCH_SIZE,
        ),
        needs_checkpoint=True,
        checkpoint_hint="pass the JSON file of generated texts as --checkpoint (see docs/BASELINES.md)",
    )
)
