"""Text corpora for LinCIR through Hugging Face ``datasets``: local files or hub datasets, concatenated.

A corpus spec is one string:

- ``captions.txt``: one caption per line (blank lines are skipped);
- ``prompts.csv#prompt`` / ``x.tsv#caption`` / ``x.jsonl#text`` / ``x.parquet``: a named column (default ``text``);
- a glob such as ``shards/*.parquet`` (all files of one format);
- ``hf:owner/name[@split][#column]`` (``owner/name`` alone also works when no such local path exists): a hub dataset,
  only when downloads are allowed or the hub cache is used offline (``HF_DATASETS_OFFLINE=1``).

The upstream corpora are ``hf:dangne/gcc_caption_only`` (CC3M captions),
``hf:FredZhang7/stable-diffusion-prompts-2.47M`` and ``hf:Geonmo/midjourney-prompts-only`` (column ``text``,
split ``train``; LINCIR.md §8.1); the short names ``cc3m``, ``sdp`` and ``midjourney`` stand for them.

The corpus hash covers the captions themselves (content and order), so mask caches are shared by identical corpora
and invalidated by any edit.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cirbench.errors import CorpusError
from cirbench.network import downloads_allowed, hub_access, user_asked_offline
from cirbench.paths import cache_root

UPSTREAM_CORPORA = {
    "cc3m": "hf:dangne/gcc_caption_only",
    "sdp": "hf:FredZhang7/stable-diffusion-prompts-2.47M",
    "midjourney": "hf:Geonmo/midjourney-prompts-only",
}

_BUILDERS = {
    ".txt": "text",
    ".text": "text",
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
}
_HUB_NAME = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass(frozen=True)
class CorpusSpec:
    """One parsed corpus source."""

    kind: str  # a datasets builder ("text", "csv", "json", "parquet") or "hub"
    source: str  # a path / glob, or a hub dataset name
    column: str = "text"
    split: str = "train"
    files: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        if self.kind == "hub":
            return f"hf:{self.source}@{self.split}#{self.column}"
        return f"{self.source}#{self.column}" if self.kind != "text" else self.source


def parse_corpus_spec(spec: str, column: str | None = None) -> CorpusSpec:
    """Parse a corpus spec string (see the module docstring); ``column`` overrides the default ``text``."""
    spec = UPSTREAM_CORPORA.get(spec, spec)
    source, _, col = spec.partition("#")
    col = col or column or "text"
    if source.startswith("hf:"):
        name, _, split = source[3:].partition("@")
        return CorpusSpec(kind="hub", source=name, column=col, split=split or "train")
    files = sorted(glob.glob(os.path.expanduser(source))) if any(c in source for c in "*?[") else []
    path = Path(source).expanduser()
    if not files and path.is_file():
        files = [str(path)]
    if not files:
        if _HUB_NAME.match(source) and not path.exists():
            name, _, split = source.partition("@")
            return CorpusSpec(kind="hub", source=name, column=col, split=split or "train")
        if path.is_dir():
            raise CorpusError(
                f"corpus {spec!r} is a folder; name its files with a glob (e.g. '{source.rstrip('/')}/*.txt')"
            )
        raise CorpusError(f"corpus {spec!r}: no such file (write a path, a glob, or hf:owner/name for a hub dataset)")
    suffixes = {Path(f).suffix.lower() for f in files}
    if len(suffixes) != 1 or next(iter(suffixes)) not in _BUILDERS:
        raise CorpusError(
            f"corpus {spec!r}: cannot tell the format from {sorted(suffixes)}; use one of "
            f"{', '.join(sorted(_BUILDERS))} (one format per spec)"
        )
    suffix = next(iter(suffixes))
    return CorpusSpec(kind=_BUILDERS[suffix], source=source, column=col, files=tuple(files))


def _load_one(spec: CorpusSpec, allow_download: bool | None, cache_dir: str) -> Any:
    import datasets

    datasets.disable_progress_bars()  # cirbench shows its own progress; Arrow's bars would interleave with it

    allowed = downloads_allowed(allow_download)
    if spec.kind == "hub":
        if not allowed and not user_asked_offline():
            raise CorpusError(
                f"corpus hf:{spec.source} is a hub dataset and downloads are off: pass --allow-download "
                "(or set CIRBENCH_ALLOW_DOWNLOAD=1) on a machine with network, set HF_DATASETS_OFFLINE=1 to use "
                "a copy already in the Hugging Face cache, or export it to a local parquet/txt file"
            )
        try:
            with hub_access(allowed):
                ds = datasets.load_dataset(spec.source, split=spec.split)
        except Exception as error:  # noqa: BLE001 - any hub/cache failure becomes one clear message
            raise CorpusError(f"corpus hf:{spec.source} (split {spec.split}) could not be loaded: {error}") from error
    else:
        kwargs: dict[str, Any] = {}
        if spec.source.lower().endswith(".tsv") or all(f.lower().endswith(".tsv") for f in spec.files):
            kwargs["delimiter"] = "\t"
        if spec.kind == "csv":  # a caption reading "NA", "None" or "null" is text, not a missing value
            kwargs.update(keep_default_na=False, na_values=[])
        try:
            with hub_access(False):  # local files: never the network
                ds = datasets.load_dataset(
                    spec.kind, data_files=list(spec.files), split="train", cache_dir=cache_dir, **kwargs
                )
        except Exception as error:  # noqa: BLE001
            raise CorpusError(f"corpus {spec.source}: could not be read as {spec.kind}: {error}") from error
    if spec.column not in ds.column_names:
        raise CorpusError(
            f"corpus {spec.label}: no column {spec.column!r}; columns are {', '.join(ds.column_names)} "
            f"(choose one with {spec.source}#COLUMN or --column)"
        )
    ds = ds.select_columns([spec.column])
    if spec.column != "text":
        ds = ds.rename_column(spec.column, "text")
    if spec.kind == "text":
        ds = ds.filter(lambda batch: [bool(t and t.strip()) for t in batch["text"]], batched=True)
    return ds.cast_column("text", datasets.Value("large_string"))


@dataclass
class Corpus:
    """Concatenated captions (an Arrow-backed ``datasets.Dataset`` with one column ``text``)."""

    dataset: Any
    specs: list[CorpusSpec]
    sizes: list[int]
    _hash: str | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.dataset)

    def texts(self, batch_size: int = 10_000) -> Iterator[str | None]:
        """Every caption in order (``None`` where a file has an empty cell)."""
        for batch in self.dataset.iter(batch_size=batch_size):
            yield from batch["text"]

    @property
    def hash(self) -> str:
        """sha256 over the captions (length-prefixed, in order): the cache key of everything derived from them."""
        if self._hash is None:
            self._hash = corpus_hash(self.texts())
        return self._hash

    def describe(self) -> list[dict[str, Any]]:
        return [{"spec": s.label, "captions": n} for s, n in zip(self.specs, self.sizes, strict=True)]


def corpus_hash(texts: Iterator[str | None] | Sequence[str | None]) -> str:
    digest = hashlib.sha256(b"cirbench-corpus-v1\n")
    for text in texts:
        data = b"\xff" if text is None else text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def load_corpus(
    specs: Sequence[str],
    column: str | None = None,
    allow_download: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Corpus:
    """Load and concatenate the corpora named by ``specs`` (in order)."""
    import datasets

    if not specs:
        raise CorpusError("no corpus given: pass --corpus FILE (txt/csv/tsv/jsonl/parquet) or hf:owner/name")
    parsed = [parse_corpus_spec(s, column) for s in specs]
    root = str(Path(cache_dir) if cache_dir else cache_root() / "datasets")
    parts = [_load_one(spec, allow_download, root) for spec in parsed]
    dataset = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    return Corpus(dataset=dataset, specs=parsed, sizes=[len(p) for p in parts])


def corpus_from_texts(texts: Sequence[str]) -> Corpus:
    """An in-memory corpus (tests, ``cirbench lincir mask``)."""
    import datasets

    features = datasets.Features({"text": datasets.Value("large_string")})
    ds = datasets.Dataset.from_dict({"text": list(texts)}, features=features)
    return Corpus(dataset=ds, specs=[CorpusSpec(kind="memory", source="<memory>")], sizes=[len(ds)])
