"""Evaluation-server files from stored rankings: CIRR test1 (recall + recall_subset), CIRCO test, FashionIQ
starter-kit ``{cat}.{split}.pred.json``.

Servers go down and reject files late, so everything is checked before anything is written: the validators
below are pure functions of plain data (query ids, references, group members, gallery ids) and collect every
problem into one error. Formats (BENCHMARKS.md §1.4, §2.4, §3.4) follow the official example files byte
for byte: CIRR ``{"version": "rc2", "metric": ..., "<pairid>": [...]}`` with the pair ids in sorted order
after the two header keys, CIRCO ``{"<id>": [50 int ids]}`` in query order, both ``json.dumps`` with default
separators and no trailing newline.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cirbench.errors import ResultError
from cirbench.io import atomic_write_bytes

TOP_K = 50
CIRR_SUBSET_K = 3
CIRR_VERSION = "rc2"
CIRR_MAX_BYTES = 5_000_000  # "Maximum file size 5 MB" (Cuberick-Orion/CIRR:Test-split_server.md#L50)
CIRR_TEST_QUERIES = 4148
CIRCO_TEST_QUERIES = 800
TEST_SPLITS = {"cirr": "test1", "circo": "test"}
SPLIT_ALIASES = {"cirr": {"test": "test1"}}
FASHIONIQ_CATEGORIES = ("dress", "shirt", "toptee")
_SHOW = 3  # examples per problem in an error message


class SubmissionError(ResultError):
    """A run or a file the server would reject; the message lists every problem found."""


@dataclass(frozen=True)
class CIRRTestSet:
    """What the CIRR validators need from ``cap.rc2.test1.json`` and ``split.rc2.test1.json``."""

    query_ids: Sequence[str]
    references: Mapping[str, str]
    members: Mapping[str, Collection[str]]  # img_set members (the reference is subtracted where it matters)
    gallery: Collection[str]


@dataclass(frozen=True)
class CIRCOTestSet:
    """CIRCO test query ids and, when ``image_info_unlabeled2017.json`` is available, the gallery ids."""

    query_ids: Sequence[str]
    gallery: Collection[str] | None = None


# --------------------------------------------------------------------------------------------- the run


def check_run(result: Mapping[str, Any], benchmark: str) -> None:
    """Refuse a result that cannot become a test submission (wrong benchmark, val split, dropped queries)."""
    bench = result.get("benchmark") or {}
    name, split = bench.get("name"), bench.get("split")
    key = str(result.get("run_key", "?"))[:12]
    if name != benchmark:
        raise SubmissionError(f"run {key} is a {name} result, not {benchmark}; pick a {benchmark} run")
    if benchmark in TEST_SPLITS:
        wanted = TEST_SPLITS[benchmark]
        if SPLIT_ALIASES.get(benchmark, {}).get(split, split) != wanted:
            raise SubmissionError(
                f"run {key} is a {benchmark} {split} result; the {benchmark.upper()} test server needs a "
                f"{wanted} run (evaluate with `cirbench eval --benchmark {benchmark} --split {wanted}`): "
                f"{split} rankings must never be uploaded as test predictions"
            )
    skipped = result.get("skipped") or {}
    dropped = int(skipped.get("queries_dropped") or 0)
    missing = int(skipped.get("images_missing") or 0)
    if dropped or missing:
        raise SubmissionError(
            f"run {key} was evaluated without {missing} missing images and dropped {dropped} queries "
            "(--skip-missing); a submission needs every query ranked over the full gallery: get the missing "
            "images and evaluate again"
        )
    protocol = (result.get("benchmark") or {}).get("protocol") or {}
    if benchmark == "cirr" and protocol.get("remove_reference") is False:
        raise SubmissionError(
            f"run {key} kept the reference image in its CIRR rankings (remove_reference=false); the CIRR server "
            "protocol removes it: evaluate again with the default protocol"
        )


def _problems_error(what: str, problems: list[str]) -> SubmissionError:
    return SubmissionError(f"{what} not written, {len(problems)} problem(s): " + "; ".join(problems))


def _examples(items: Iterable[Any]) -> str:
    items = list(items)
    more = f", ... ({len(items)} in all)" if len(items) > _SHOW else ""
    return ", ".join(str(i) for i in items[:_SHOW]) + more


def _check_keys(problems: list[str], keys: Collection[str], query_ids: Collection[str] | None, expected: int) -> None:
    if query_ids is None:
        if len(keys) != expected:
            problems.append(f"{len(keys)} queries, the test split has {expected}")
        return
    wanted = {str(q) for q in query_ids}
    missing = [q for q in query_ids if str(q) not in keys]
    extra = sorted(set(keys) - wanted)
    if missing:
        problems.append(f"missing test queries: {_examples(missing)}")
    if extra:
        problems.append(f"unknown query ids: {_examples(extra)}")


def _check_lists(
    problems: list[str],
    lists: Mapping[str, Sequence[Any]],
    k: int,
    gallery: Collection[str] | None,
    label: str,
) -> None:
    short, dupes, outside = [], [], []
    gallery_set = {str(g) for g in gallery} if gallery is not None else None
    for qid, ids in lists.items():
        if len(ids) != k:
            short.append(f"{qid} ({len(ids)})")
        if len(set(ids)) != len(ids):
            dupes.append(qid)
        if gallery_set is not None:
            outside += [f"{qid}: {i}" for i in ids if str(i) not in gallery_set]
    if short:
        problems.append(f"{label} lists must have exactly {k} ids: {_examples(short)}")
    if dupes:
        problems.append(f"{label} lists with duplicate ids: {_examples(dupes)}")
    if outside:
        problems.append(f"{label} ids not in the test gallery: {_examples(outside)}")


def check_size(data: bytes, limit: int | None, name: str) -> None:
    """The server's upload limit (CIRR: 5 MB); None = no documented limit."""
    if limit is not None and len(data) > limit:
        raise SubmissionError(f"{name} is {len(data):,} bytes, over the server limit of {limit:,} bytes")


# --------------------------------------------------------------------------------------------- CIRR


def cirr_files(rankings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Stored rankings -> (recall file, recall_subset file): top-50 names and top-3 within the group."""
    top = rankings.get("top") or {}
    subset = rankings.get("subset")
    if not subset:
        raise SubmissionError("the rankings have no CIRR subset rankings ('subset'); re-run the CIRR test1 evaluation")
    recall = {"version": CIRR_VERSION, "metric": "recall"}
    recall.update({qid: list(top[qid][:TOP_K]) for qid in sorted(top, key=str)})
    sub = {"version": CIRR_VERSION, "metric": "recall_subset"}
    sub.update({qid: list(subset[qid][:CIRR_SUBSET_K]) for qid in sorted(subset, key=str)})
    return recall, sub


def validate_cirr(
    recall: Mapping[str, Any],
    subset: Mapping[str, Any],
    *,
    query_ids: Collection[str] | None = None,
    references: Mapping[str, str] | None = None,
    members: Mapping[str, Collection[str]] | None = None,
    gallery: Collection[str] | None = None,
    expected_queries: int = CIRR_TEST_QUERIES,
) -> None:
    """Both CIRR files against the test split; inputs left None skip their checks. Raises on any problem."""
    for name, data, metric, k in (
        ("recall", recall, "recall", TOP_K),
        ("recall_subset", subset, "recall_subset", 3),
    ):
        problems: list[str] = []
        if data.get("version") != CIRR_VERSION or data.get("metric") != metric:
            problems.append(f"header must be version={CIRR_VERSION!r}, metric={metric!r}")
        lists = {q: v for q, v in data.items() if q not in ("version", "metric")}
        _check_keys(problems, lists.keys(), query_ids, expected_queries)
        bad_type = [q for q, v in lists.items() if not isinstance(v, list) or not all(isinstance(i, str) for i in v)]
        if bad_type:
            problems.append(f"values must be lists of image names: {_examples(bad_type)}")
            raise _problems_error(f"CIRR {name} file", problems)
        _check_lists(problems, lists, k, gallery, name)
        if references is not None:
            with_ref = [q for q, ids in lists.items() if references.get(q) in ids]
            if with_ref:
                problems.append(f"{name} lists contain the query's reference image: {_examples(with_ref)}")
        if name == "recall_subset" and members is not None:
            outside = [
                q for q, ids in lists.items() if not set(ids) <= set(members.get(q, ())) - {(references or {}).get(q)}
            ]
            if outside:
                problems.append(f"subset lists not within the group members minus the reference: {_examples(outside)}")
        if problems:
            raise _problems_error(f"CIRR {name} file", problems)


def cirr_bytes(data: Mapping[str, Any]) -> bytes:
    """Serialised like the authors' demo files: header keys first, default separators, no trailing newline."""
    return json.dumps(dict(data)).encode("utf-8")


def cirr_test_set(root: Path) -> CIRRTestSet:
    """The CIRR test1 queries, references, members and gallery through the benchmark loader."""
    from cirbench.benchmarks import get_benchmark

    data = get_benchmark("cirr").load(Path(root), "test1")
    queries = data.queries
    return CIRRTestSet(
        query_ids=[q.qid for q in queries],
        references={q.qid: q.reference for q in queries},
        members={q.qid: (q.reference, *(q.subset or ())) for q in queries},
        gallery=frozenset(g for p in data.parts for g in (p.gallery or ())),
    )


def write_cirr(
    rankings: Mapping[str, Any],
    out_dir: Path,
    stem: str,
    test: CIRRTestSet | None = None,
    max_bytes: int = CIRR_MAX_BYTES,
) -> list[Path]:
    """Validate, then write ``<stem>.recall.json`` and ``<stem>.recall_subset.json`` (both or neither)."""
    recall, subset = cirr_files(rankings)
    validate_cirr(
        recall,
        subset,
        query_ids=test.query_ids if test else None,
        references=test.references if test else None,
        members=test.members if test else None,
        gallery=test.gallery if test else None,
    )
    paths = [Path(out_dir) / f"{stem}.recall.json", Path(out_dir) / f"{stem}.recall_subset.json"]
    blobs = [cirr_bytes(recall), cirr_bytes(subset)]
    for path, blob in zip(paths, blobs, strict=True):
        check_size(blob, max_bytes, path.name)
    for path, blob in zip(paths, blobs, strict=True):
        atomic_write_bytes(path, blob)
    return paths


# --------------------------------------------------------------------------------------------- CIRCO


def circo_file(rankings: Mapping[str, Any]) -> dict[str, list[int]]:
    """Stored rankings -> ``{"<query id>": [50 int image ids]}`` in query order (ints, as the example)."""
    top = rankings.get("top") or {}
    out: dict[str, list[int]] = {}
    for qid in sorted(top, key=_int_or_str):
        try:
            out[str(qid)] = [int(i) for i in top[qid][:TOP_K]]
        except (TypeError, ValueError) as e:
            raise SubmissionError(f"CIRCO query {qid}: an image id is not a COCO integer id ({e})") from e
    return out


def _int_or_str(value: str) -> tuple[int, Any]:
    return (0, int(value)) if str(value).isdigit() else (1, str(value))


def validate_circo(
    submission: Mapping[str, Any],
    *,
    query_ids: Collection[str] | None = None,
    gallery: Collection[str] | None = None,
    expected_queries: int = CIRCO_TEST_QUERIES,
) -> None:
    """The CIRCO file against the test split: every query, 50 unique int ids, in the gallery when known."""
    problems: list[str] = []
    _check_keys(problems, submission.keys(), query_ids, expected_queries)
    bad_type = [
        q
        for q, v in submission.items()
        if not isinstance(v, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in v)
    ]
    if bad_type:
        problems.append(f"values must be lists of integer COCO ids: {_examples(bad_type)}")
        raise _problems_error("CIRCO file", problems)
    _check_lists(problems, submission, TOP_K, gallery, "ranking")
    if problems:
        raise _problems_error("CIRCO file", problems)


def circo_test_set(root: Path) -> CIRCOTestSet:
    """CIRCO test query ids (and the gallery when the COCO unlabeled image info is there) via the loader."""
    from cirbench.benchmarks import get_benchmark

    data = get_benchmark("circo").load(Path(root), "test")
    gallery = [g for p in data.parts for g in (p.gallery or ())]
    return CIRCOTestSet([q.qid for q in data.queries], frozenset(gallery) if gallery else None)


def write_circo(rankings: Mapping[str, Any], out_dir: Path, stem: str, test: CIRCOTestSet | None = None) -> list[Path]:
    """Validate, then write ``<stem>.json`` (the CIRCO server has no documented size limit)."""
    submission = circo_file(rankings)
    validate_circo(submission, query_ids=test.query_ids if test else None, gallery=test.gallery if test else None)
    path = Path(out_dir) / f"{stem}.json"
    atomic_write_bytes(path, json.dumps(submission).encode("utf-8"))
    return [path]


# --------------------------------------------------------------------------------------------- FashionIQ


def fashioniq_pred_records(
    records: Sequence[Mapping[str, Any]], rankings: Mapping[str, Any], category: str, gallery: Collection[str]
) -> list[dict[str, Any]]:
    """The starter kit's ``{cat}.{split}.pred.json``: each caption record plus ``"ranking": [50 ASINs]``.

    Query ids are ``<category>/<record index>`` (the loader's), so record order is preserved.
    """
    top = rankings.get("top") or {}
    out, problems, lists = [], [], {}
    for i, record in enumerate(records):
        qid = f"{category}/{i}"
        if qid not in top:
            continue
        lists[qid] = list(top[qid][:TOP_K])
        out.append({**record, "ranking": lists[qid]})
    _check_keys(problems, lists.keys(), [f"{category}/{i}" for i in range(len(records))], len(records))
    _check_lists(problems, lists, TOP_K, gallery, f"{category} ranking")
    if problems:
        raise _problems_error(f"FashionIQ {category} prediction file", problems)
    return out


def write_fashioniq(
    rankings: Mapping[str, Any],
    root: Path,
    split: str,
    out_dir: Path,
    categories: Sequence[str] = FASHIONIQ_CATEGORIES,
) -> list[Path]:
    """Validate every category, then write ``<out_dir>/{cat}.{split}.pred.json`` (indent=4, as eval.py)."""
    from cirbench.benchmarks.fashioniq import LAYOUTS, detect_layout
    from cirbench.io import read_json

    contents = {}
    for cat in categories:
        layout = detect_layout(Path(root), cat, split)
        records = read_json(Path(root) / LAYOUTS[layout][0] / f"cap.{cat}.{split}.json")
        gallery = read_json(Path(root) / "image_splits" / f"split.{cat}.{split}.json")
        contents[cat] = fashioniq_pred_records(records, rankings, cat, gallery)
    paths = []
    for cat, content in contents.items():
        path = Path(out_dir) / f"{cat}.{split}.pred.json"
        atomic_write_bytes(path, json.dumps(content, indent=4).encode("utf-8"))
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------- one call


def submit(
    result: Mapping[str, Any],
    benchmark: str,
    out_dir: Path,
    root: Path | None = None,
    rankings: Mapping[str, Any] | None = None,
) -> tuple[list[Path], list[str]]:
    """Check the run, load its rankings, validate and write the server file(s); returns (paths, notes).

    Without ``root`` the CIRR/CIRCO files are checked for structure and query count only (noted).
    """
    from cirbench.results import load_rankings

    check_run(result, benchmark)
    if rankings is None:
        if not result.get("rankings_file"):
            raise SubmissionError(f"run {result.get('run_key')} has no stored rankings; re-run the evaluation")
        rankings = load_rankings(dict(result))
    stem = Path(str(result.get("_path") or f"{benchmark}--{result.get('run_key', 'run')}.json")).name[: -len(".json")]
    notes: list[str] = []
    if root is None and benchmark in TEST_SPLITS:
        notes.append(
            "validated structure and query count only; pass --root <annotations> to check query ids, "
            "references, group members and gallery ids against the test split"
        )
    if benchmark == "cirr":
        return write_cirr(rankings, Path(out_dir) / "cirr", stem, cirr_test_set(root) if root else None), notes
    if benchmark == "circo":
        test = circo_test_set(root) if root else None
        if test is not None and test.gallery is None:
            notes.append("COCO unlabeled image info not found under --root: gallery ids not checked")
        return write_circo(rankings, Path(out_dir) / "circo", stem, test), notes
    if benchmark == "fashioniq":
        if root is None:
            raise SubmissionError("FashionIQ prediction files copy the caption records: pass --root <FashionIQ root>")
        bench = result.get("benchmark") or {}
        cats = (bench.get("protocol") or {}).get("categories") or FASHIONIQ_CATEGORIES
        notes.append("FashionIQ has no live test server: these are the historic starter-kit files")
        paths = write_fashioniq(rankings, root, bench["split"], Path(out_dir) / "fashioniq" / stem, cats)
        return paths, notes
    raise SubmissionError(f"no submission format for {benchmark!r}; supported: cirr, circo, fashioniq")
