"""The data model every benchmark loader produces, and the ``Benchmark`` base class that owns a benchmark's rules.

A benchmark is one module holding one ``Benchmark`` subclass. Everything specific to it lives there: typed protocol
options, metric names and the headline metric, leaderboard columns and derived metrics, query-id and image-id
normalisation for ``score``, the texts a method receives, how an image is opened, readiness checks (``blockers``)
and the submission writer. Code outside ``cirbench/benchmarks/`` asks the benchmark object, never its name.

Images are named by a canonical key (CIRCO: the COCO id as a decimal string; CIRR: the NLVR2 name; FashionIQ: the
ASIN; GeneCIS: ``coco:<id>`` or ``vg:<id>:<x>,<y>,<w>,<h>``) and resolved to files through ``ImageRef``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cirbench.errors import OptionError, ScoringError, SubmissionError
from cirbench.identity import files_sha256
from cirbench.images import ImageCheck, ImageRef, Level, check_images, open_rgb  # ImageRef: re-exported
from cirbench.options import Option, parse_options
from cirbench.query_scores import QueryScores

if TYPE_CHECKING:
    from PIL import Image

# How a method joins a query's several captions (FashionIQ has two), BENCHMARKS.md §3: SEARLE/LinCIR strip '.?, ',
# join with " and " in both orders and average the two normalised features; Pic2Word uses "{c2} and {c1}" raw.
CAPTION_JOINS = ("both-orders", "c1-and-c2", "c2-and-c1-raw")


def image_stem(value: str) -> str:
    """An image name without folder or extension (``dev/dev-1-0-img0.png`` -> ``dev-1-0-img0``)."""
    base = value.rsplit("/", 1)[-1]
    for ext in (".png", ".jpg", ".jpeg"):
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return base


@dataclass(frozen=True)
class Query:
    """One composed query.

    ``texts`` holds the modification text(s) as the benchmark defines them (FashionIQ: both captions, unjoined);
    ``Benchmark.query_texts`` turns them into what a method encodes. ``target`` is the single scored target (CIRR
    ``target_hard``, CIRCO ``target_img_id``); ``gt`` holds every ground truth (CIRCO ``gt_img_ids``). ``subset``
    is CIRR's group members minus the reference. ``candidates`` is a per-query gallery (GeneCIS: target first).
    """

    qid: str
    reference: str
    texts: tuple[str, ...]
    target: str | None = None
    gt: tuple[str, ...] | None = None
    subset: tuple[str, ...] | None = None
    candidates: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    # The whole sentence the protocol fixes for a pseudo-word method, with ``prompts.IMAGE_SLOT`` where the pseudo
    # word goes (Pic2Word's ImageNet-R and COCO); None: the method wraps ``texts`` in its own template.
    prompt: str | None = None


@dataclass
class Part:
    """Queries that share one gallery: the whole split, a FashionIQ category or a GeneCIS task.

    ``gallery`` is None when every query brings its own ``candidates``. ``remove_reference`` drops each
    query's reference image from its ranking (CIRR protocol).
    """

    name: str
    queries: list[Query]
    gallery: list[str] | None
    remove_reference: bool = False


@dataclass
class BenchmarkSplit:
    """A loaded split.

    ``options`` are the validated protocol options (what the user chose); ``facts`` are derived from the data and
    recorded, never hashed (gallery sizes, rules in words); ``blockers`` say why the split cannot be ranked here
    (scoring a rankings file still works); ``warnings`` are recorded with every result.
    """

    benchmark: str
    split: str
    parts: list[Part]
    images: dict[str, ImageRef]
    options: dict[str, Any]
    annotation_files: list[Path]
    has_labels: bool
    layout: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    blockers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def queries(self) -> list[Query]:
        return [q for part in self.parts for q in part.queries]

    @property
    def gallery_size(self) -> int:
        """Images ranked against: the sum over distinct galleries (parts may share one, as shapes' styles do)."""
        distinct = {tuple(p.gallery) for p in self.parts if p.gallery is not None}
        return sum(len(g) for g in distinct)

    @cached_property
    def _checks(self) -> dict[str, ImageCheck]:
        return {}

    def check_images(self, level: Level = "exists", progress: Callable[[int, int], None] | None = None) -> ImageCheck:
        """Which images can be read (``exists``, ``header`` or ``deep``); checked once per loaded split and level,
        however many runs use it."""
        if level not in self._checks:
            self._checks[level] = check_images(self.images.values(), level, progress)
        return self._checks[level]

    @property
    def image_check(self) -> ImageCheck:
        return self.check_images("exists")

    @cached_property
    def annotations_sha256(self) -> str:
        """One hash over the annotation files' names and bytes (part of the data's identity)."""
        return files_sha256(self.annotation_files)


@dataclass
class Rankings:
    """Ranked gallery keys per query id (top-K, K >= 50 or all candidates), plus CIRR's subset ranking."""

    top: dict[str, list[str]]
    subset: dict[str, list[str]] | None = None
    scores: dict[str, list[float]] | None = None
    # Full-ranking positions of every ground truth (``benchmarks.ranks.RankingsWithPositives``; None: not known).
    positive_ranks: dict[str, list[int]] | None = None


@dataclass(frozen=True)
class ProtocolView:
    """A protocol variant a leaderboard shows in its own section: rows whose protocol marks include ``deviation``
    are never ranked beside the benchmark's official rows."""

    deviation: str
    title: str
    columns: tuple[str, ...]
    main_metric: str
    notes: tuple[str, ...] = ()


class Benchmark:
    """Base class of every benchmark; subclasses set the class attributes and implement ``read`` and ``metrics``.

    The defaults suit a simple benchmark with one text per query, plain RGB images, local labels and no server.
    """

    name: ClassVar[str]
    title: ClassVar[str] = ""  # display name in leaderboards (default: ``name``)
    description: ClassVar[str] = ""
    splits: ClassVar[tuple[str, ...]]
    split_aliases: ClassVar[Mapping[str, str]] = {}
    protocol_version: ClassVar[str] = "1"
    options: ClassVar[tuple[Option, ...]] = ()
    main_metric: ClassVar[str]
    metric_names: ClassVar[tuple[str, ...]]
    # Leaderboard: official columns (None: every metric present), where papers report it, order among sections.
    leaderboard_columns: ClassVar[tuple[str, ...] | None] = None
    published_split: ClassVar[str] = "test"
    leaderboard_order: ClassVar[int] = 100
    toy: ClassVar[bool] = False  # a synthetic world (shapes): charts and tables keep it apart from real benchmarks
    leaderboard_notes: ClassVar[tuple[str, ...]] = ()
    # Evaluation server: the split it scores and the protocol options it expects (None: no server).
    server_split: ClassVar[str | None] = None
    server_options: ClassVar[Mapping[str, Any]] = {}
    image_reader_id: ClassVar[str] = "rgb"
    # Images rendered from the annotation files (shapes): their identity at reuse is that recipe, which the run key
    # already hashes, not the files' stat (a fresh clone renders them again). See ``evaluation.reuse``.
    images_generated: ClassVar[bool] = False
    # Its metrics need every ground truth's position in the *full* ranking (FreeDom's mAP, Pic2Word's R@200): the
    # engine then returns ``benchmarks.ranks.RankingsWithPositives`` (and no approximate index can rank it).
    needs_positive_ranks: ClassVar[bool] = False
    # Protocol variants a leaderboard shows in their own sections, never beside the official rows (MIEB's CIRR).
    separate_protocols: ClassVar[tuple[ProtocolView, ...]] = ()

    # --- options and splits ------------------------------------------------------------------------------------
    @property
    def display_name(self) -> str:
        return self.title or self.name

    def resolve_split(self, split: str | None) -> str:
        """The canonical split name (aliases such as CIRR's ``test`` = ``test1``); None means the first split."""
        if split is None:
            return self.splits[0]
        key = str(split).strip()
        key = self.split_aliases.get(key, key)
        if key not in self.splits:
            aliases = f" (aliases: {', '.join(f'{a}={b}' for a, b in self.split_aliases.items())})"
            raise OptionError(
                f"{self.name} has splits {', '.join(self.splits)}{aliases if self.split_aliases else ''}, not {split!r}"
            )
        return key

    def parse_options(self, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """Every protocol option, typed; unknown keys and bad values are one ``OptionError``."""
        return parse_options(self.options, options, f"benchmark {self.name}")

    def default_options(self) -> dict[str, Any]:
        return self.parse_options({})

    # --- loading -----------------------------------------------------------------------------------------------
    def load(self, root: Path | str | None, split: str | None = None, options: Mapping[str, Any] | None = None):
        """Read a split from ``root`` (any supported layout); options are validated first. Images are resolved
        but not opened."""
        split = self.resolve_split(split)
        opts = self.parse_options(options)
        return self.read(Path(root) if root is not None else None, split, opts)

    def read(self, root: Path | None, split: str, options: dict[str, Any]) -> BenchmarkSplit:
        """Build the split from annotation files; ``options`` are already validated."""
        raise NotImplementedError

    def metrics(self, data: BenchmarkSplit, rankings: Rankings) -> dict[str, float]:
        """Official metrics, as percentages, computed from rankings alone."""
        raise NotImplementedError

    def part_hits(self, scores: QueryScores, data: BenchmarkSplit, rankings: Rankings, ks: Sequence[int]) -> None:
        """Add ``<part>_R@K`` hit vectors (empty outside the part) for benchmarks that average per-part recalls."""
        from cirbench.metrics import hits_at_k

        for part in data.parts:
            self.require_rankings(part.queries, rankings)
            tops, targets = [rankings.top[q.qid] for q in part.queries], [q.target for q in part.queries]
            for k in ks:
                scores.add_part(f"{part.name}_R@{k}", part.name, hits_at_k(tops, targets, k))

    def per_query(self, data: BenchmarkSplit, rankings: Rankings) -> QueryScores:
        """Every metric as one value per query with the rule that gives back ``metrics`` exactly (statistics)."""
        raise ScoringError(f"{self.name} does not give per-query metrics, so it has no intervals or paired tests")

    def query_clusters(self, data: BenchmarkSplit) -> dict[str, str] | None:
        """Query id -> cluster of queries that depend on each other (``stats`` resamples and sign-flips a cluster
        whole; docs/STATISTICS.md). Default: the queries sharing a reference image, when some reference repeats;
        None when every query stands alone."""
        references = {q.qid: q.reference for q in data.queries}
        return references if len(set(references.values())) < len(references) else None

    def main_metric_for(self, options: Mapping[str, Any]) -> str:
        """The headline metric under these protocol options (a protocol variant may report other metrics)."""
        return self.main_metric

    def metric_names_for(self, options: Mapping[str, Any]) -> tuple[str, ...]:
        """The metric names under these protocol options."""
        return self.metric_names

    def wants_positive_ranks(self, data: BenchmarkSplit) -> bool:
        """Whether this split's metrics need every ground truth's full-ranking position (``needs_positive_ranks``,
        or a protocol variant reporting K beyond the stored top 50)."""
        return self.needs_positive_ranks

    def derived_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """Metrics computed from others for leaderboards (e.g. CIRR's Avg) when a row lacks them."""
        return {}

    def require_rankings(self, queries: Sequence[Query], rankings: Rankings) -> None:
        missing = [q.qid for q in queries if q.qid not in rankings.top]
        if missing:
            raise ScoringError(f"no ranking for {len(missing)} {self.name} queries, e.g. {missing[:5]}")

    # --- what methods see --------------------------------------------------------------------------------------
    def query_texts(self, query: Query, caption_join: str = "both-orders") -> list[str]:
        """The text(s) a method encodes for ``query``; several are encoded and their normalised features averaged.

        ``caption_join`` (one of ``CAPTION_JOINS``) says how a method combines several captions; a benchmark with
        one text per query ignores it.
        """
        return [query.texts[0]]

    open_image: ClassVar[Callable[[ImageRef], Image.Image]] = staticmethod(open_rgb)

    # --- scoring files -----------------------------------------------------------------------------------------
    def normalise_query_id(self, qid: Any) -> str:
        """Canonical query id of a rankings file's key."""
        return str(qid).strip()

    def normalise_image_id(self, value: Any, qid: str = "") -> str:
        """Canonical image key of a ranked id; a value that is neither an int nor a string is refused."""
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ScoringError(f"query {qid}: ranked id {value!r} is neither an int nor a string")
        return str(value).strip()

    def rankings_file_header(self, raw: dict[str, Any], path: Path, kind: str | None) -> str | None:
        """Strip and check a server-format header from a rankings file; returns the file's kind if it says one."""
        if "version" in raw or "metric" in raw:
            raise ScoringError(f"{path}: 'version'/'metric' keys belong to a server format {self.name} does not use")
        return None

    # --- submission --------------------------------------------------------------------------------------------
    def write_submission(
        self,
        rankings: Mapping[str, Any],
        data: BenchmarkSplit | None,
        out_dir: Path,
        stem: str,
        split: str,
    ) -> tuple[list[Path], list[str]]:
        """Validate, then write the evaluation-server file(s) for stored rankings; returns (paths, notes).

        ``data`` is the split loaded through this benchmark when the user gave ``--root`` (else None).
        """
        raise SubmissionError(f"{self.name} has no submission format (its metrics are computed locally)")

    @property
    def has_submission(self) -> bool:
        return type(self).write_submission is not Benchmark.write_submission
