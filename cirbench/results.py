"""Result files: one typed ``RunResult`` per run, named by a key that hashes everything that changes the numbers.

Layout (under the results folder, ``./results`` by default)::

    runs/<benchmark>/<split>/<method>--<backbone>--<key>.json            metrics, protocol, timings, environment
    runs/<benchmark>/<split>/<method>--<backbone>--<key>.rankings.json.gz  top-50 per query (+ CIRR subset)

A result stores ``key_fields``, the exact payload its run key hashes (user options and identities only), beside the
facts and settings that are recorded but not hashed.

Schemas. Schema 3 is written: schema 2 plus ``rankings_sha256`` (the sha256 of the rankings file's bytes) and
``digest`` (``cirbench.integrity.seal_json``: the sha256 of the result's canonical JSON without that field). Both are
checked on every read (``read_result``, ``load_rankings``), so every command (eval reuse, leaderboard, stats,
compare, inspect, submit, verify) refuses a damaged or edited file in one line (``IntegrityError``) naming it.
Schema 2 files (unsealed) and schema 1 files (cirbench 0.1, whose keys also hashed derived facts) are read as legacy,
unverified, with a one-line note; ``cirbench results migrate`` seals schema 2 in place (same key, only the two
fields added) and rewrites schema 1 as schema 3 under its new key.
"""

from __future__ import annotations

import logging
import platform
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cirbench import __version__
from cirbench.errors import IntegrityError, ResultError, shown
from cirbench.integrity import check_file, check_sealed, file_sha256, seal_json
from cirbench.io import atomic_write_json, atomic_write_json_gz, read_json
from cirbench.runkey import make_key_fields, run_key

SCHEMA_VERSION = 3
LEGACY_SCHEMAS = (1, 2)  # read unverified (no digest), with a note; `cirbench results migrate` seals them
SEAL_FIELDS = ("rankings_sha256", "digest")  # what schema 3 adds to schema 2
RESULT_FIX = "restore it from a copy, or delete it and evaluate again (eval --overwrite)"
RANKINGS_FIX = "restore it from a copy, or evaluate again with --overwrite"
log = logging.getLogger("cirbench")
_NOTED: set[str] = set()  # legacy files already noted in this process
DEFAULT_RESULTS_DIR = Path("results")


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class Skipped(_Record):
    """What ``--skip-missing`` left out; stored in every result (zeros when nothing was skipped)."""

    images_missing: int = 0
    images_unreadable: int = 0  # present but empty or no image (left out with --skip-missing)
    queries_dropped: int = 0
    gallery_images_dropped: int = 0
    queries_target_missing: int = 0  # kept and scored, but their target left the gallery: certain misses
    first_missing: list[str] = []
    missing_images_sha256: str | None = None


class MethodRecord(_Record):
    name: str
    variant: str = ""
    version: str = "1"
    options: dict[str, Any] = {}
    config: dict[str, Any] = {}  # how the method builds queries (prompts, mapper sizes): recorded, not hashed
    checkpoint: str | None = None
    checkpoint_id: str | None = None
    training_data: str | None = None
    zero_shot: bool | None = None
    train_meta: dict[str, Any] | None = None


class BackboneRecord(_Record):
    id: str
    weights_id: str
    quick_gelu: bool = False


class BenchmarkRecord(_Record):
    name: str
    split: str
    protocol_version: str = "1"
    options: dict[str, Any] = {}  # every protocol option, as validated (locations included)
    facts: dict[str, Any] = {}  # derived from the data: gallery sizes, rules in words; recorded, not hashed
    warnings: list[str] = []
    preprocess: str = "clip"
    layout: str = ""
    gallery_size: int | None = None
    annotations_sha256: str | None = None
    texts_with_placeholder: int | None = None  # queries whose text holds the method's placeholder character
    root: str | None = None  # where the data was read (a location: recorded, not hashed)
    images_sha256: str | None = None  # the images read: their (resolved path, size, mtime), or bytes with --verify
    images_verified: bool = False  # True: images_sha256 hashes the files' bytes


class RunResult(BaseModel):
    """One evaluation's record (schema 3)."""

    model_config = ConfigDict(extra="allow")

    schema_version: Literal[3] = SCHEMA_VERSION
    run_key: str
    key_fields: dict[str, Any]
    created_at: str
    source: Literal["run"] = "run"
    method: MethodRecord
    backbone: BackboneRecord
    benchmark: BenchmarkRecord
    metrics: dict[str, float] = {}
    main_metric: str = ""
    n_queries: int = 0
    skipped: Skipped = Skipped()
    timing: dict[str, Any] = {}
    run_settings: dict[str, Any] = {}
    env: dict[str, Any] = {}
    rankings_file: str | None = None
    migrated_from: dict[str, Any] | None = None
    rankings_sha256: str | None = None  # sha256 of the rankings file's bytes (None: no rankings, or a legacy file)
    digest: str | None = None  # ``integrity.seal_json`` of everything else (None only for a legacy file read)
    path: Path | None = Field(default=None, exclude=True)  # the file it was read from (not stored)

    @property
    def label(self) -> str:
        return f"{self.method.name} | {self.backbone.id} | {self.benchmark.name}/{self.benchmark.split}"


# --------------------------------------------------------------------------------------------- paths


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_")[:60]


def result_path(results_dir: Path, benchmark: str, split: str, method: str, backbone: str, key: str) -> Path:
    name = f"{slug(method)}--{slug(Path(backbone).name if '/' in backbone else backbone)}--{key}.json"
    return Path(results_dir) / "runs" / benchmark / split / name


def rankings_path(result_file: Path) -> Path:
    return Path(result_file).with_name(Path(result_file).name[: -len(".json")] + ".rankings.json.gz")


# --------------------------------------------------------------------------------------------- environment


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=cwd or Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment(device: str) -> dict[str, Any]:
    import open_clip
    import torch

    env = {
        "cirbench": __version__,
        "git": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "platform": platform.platform(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# --------------------------------------------------------------------------------------------- reading, writing


def save_result(result: RunResult, path: Path, rankings: dict[str, Any] | None) -> RunResult:
    """Rankings first, then the result (sealed with the rankings' sha256 and its own digest): a result file on disk
    always has its rankings beside it. ``rankings=None`` keeps the rankings already named by ``result``."""
    path = Path(path)
    if rankings is not None:
        atomic_write_json_gz(rankings_path(path), rankings)
        result.rankings_file = rankings_path(path).name
        result.rankings_sha256 = file_sha256(rankings_path(path))
    elif result.rankings_file and result.rankings_sha256 is None:  # a legacy record rewritten: seal what is there
        result.rankings_sha256 = file_sha256(_rankings_file(result, path))
    result.schema_version = SCHEMA_VERSION
    record = seal_json(result.model_dump(mode="json"))
    atomic_write_json(path, record)
    result.digest, result.path = record["digest"], path
    return result


def read_raw(path: Path, fix: str = RESULT_FIX) -> Any:
    """The parsed JSON of a result file; an unreadable one is an ``IntegrityError`` naming it."""
    try:
        return read_json(path)
    except (OSError, ValueError) as error:
        why = " ".join(str(error).split())[:160]
        raise IntegrityError(f"{path}: cannot read the result file ({why}); {fix}") from error


def checked_raw(path: Path, raw: Any, note: bool = True) -> dict[str, Any]:
    """A result's raw record, verified: schema 3 must match its digest; a legacy schema (1, 2) is noted once
    (``note``) and returned as is. Anything else is refused in one line naming the file."""
    if not isinstance(raw, dict) or "schema_version" not in raw:
        raise ResultError(f"{path} is not a cirbench result file (no schema_version)")
    version = raw["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise ResultError(f"{path} has schema_version {shown(version)}; it was not written by cirbench")
    if version == SCHEMA_VERSION:
        check_sealed(raw, path, RESULT_FIX)
        return raw
    if version in LEGACY_SCHEMAS and not any(f in raw for f in SEAL_FIELDS):
        if note and str(path) not in _NOTED:
            _NOTED.add(str(path))
            log.warning(
                "cirbench: %s is a schema-%s result without a digest: read unverified; "
                "run `cirbench results migrate` to seal it",
                path,
                version,
            )
        return raw
    if version in LEGACY_SCHEMAS:
        raise IntegrityError(f"{path}: schema_version {version} with digest fields: the file was edited; {RESULT_FIX}")
    fix = "upgrade cirbench to read it" if version > SCHEMA_VERSION else "it was not written by cirbench"
    raise ResultError(f"{path} has schema_version {version}; {fix}")


def read_result(path: Path) -> RunResult:
    """A result file of any schema written so far, verified when sealed (schema 1 is converted in memory, keeping
    its old run key)."""
    path = Path(path)
    raw = checked_raw(path, read_raw(path))
    if raw["schema_version"] == 1:
        raw = upgrade_v1(raw, keep_key=True)
    raw = {**raw, "schema_version": SCHEMA_VERSION}  # legacy records keep digest None: unsealed in memory
    try:
        result = RunResult.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise IntegrityError(f"{path}: field {where}: {first['msg']}; the file is damaged or edited") from error
    result.path = path
    return result


# --------------------------------------------------------------------------------------------- schema 1
# Schema 1 (cirbench 0.1) hashed derived facts and explanatory text into its run keys. Everything a schema-2 key needs
# is in the old file: the method's options are its declared options read from the old ``method.config``, the
# protocol's are the benchmark's declared options read from the old ``benchmark.protocol``, the rest (facts) is kept
# unhashed. Which images a ``--skip-missing`` run left out cannot be recovered (schema 1 stored the first five), so
# such a run's key gets ``missing_images = "v1:<old key>"``: kept, but never reused for a new run.


def _declared(kind: str, name: str) -> tuple[Any, ...] | None:
    """The declared options of a registered benchmark or method (None when this install does not know it)."""
    try:
        if kind == "benchmark":
            from cirbench.benchmarks import get_benchmark

            return tuple(get_benchmark(name).options)
        from cirbench.methods import get_method_entry

        return tuple(get_method_entry(name).options)
    except Exception:  # noqa: BLE001 - unknown or broken plugin: keep everything
        return None


def _split(values: dict[str, Any], declared: tuple[Any, ...] | None) -> tuple[dict[str, Any], dict[str, Any], dict]:
    """(all declared options, keyed options, the rest) of an old mixed dict; for a benchmark or method this
    install does not know, everything counts as an option, as schema 1 hashed it."""
    if declared is None:
        return dict(values), dict(values), {}
    names = {o.name for o in declared}
    options = {o.name: values.get(o.name, o.default) for o in declared}
    keyed = {o.name: options[o.name] for o in declared if o.keyed}
    rest = {k: v for k, v in values.items() if k not in names}
    return options, keyed, rest


def upgrade_v1(raw: dict[str, Any], keep_key: bool = False) -> dict[str, Any]:
    """A schema-1 record as a schema-2 record (``keep_key``: keep the old run key instead of the new one)."""
    method, bench = dict(raw.get("method") or {}), dict(raw.get("benchmark") or {})
    backbone, skipped = dict(raw.get("backbone") or {}), dict(raw.get("skipped") or {})
    config = dict(method.get("config") or {})
    m_options, m_keyed, _ = _split(config, _declared("method", method.get("name", "")))
    p_options, p_keyed, facts = _split(dict(bench.get("protocol") or {}), _declared("benchmark", bench.get("name", "")))
    warnings = [str(w) for w in facts.pop("warnings", None) or []]
    old_key = str(raw.get("run_key", ""))
    missing = None if not int(skipped.get("images_missing") or 0) else f"v1:{old_key}"
    fields = make_key_fields(
        method=method.get("name", "?"),
        method_version="1",
        method_options=m_keyed,
        checkpoint_id=method.get("checkpoint_sha256"),
        backbone=f"{str(backbone.get('id', '?')).split(':', 1)[0]}|{backbone.get('weights_id', '')}",
        benchmark=bench.get("name", "?"),
        split=bench.get("split", "?"),
        protocol_version=str(bench.get("protocol_version", "1")),
        protocol=p_keyed,
        layout=bench.get("layout", ""),
        annotations_sha256=bench.get("annotations_sha256", ""),
        missing_images=missing,
    )
    out = {k: v for k, v in raw.items() if k not in ("_path",)}
    out.update(
        schema_version=2,
        run_key=old_key if keep_key else run_key(fields),
        key_fields=fields,
        migrated_from={"schema_version": 1, "run_key": old_key},
    )
    checkpoint_id = method.pop("checkpoint_sha256", None)
    out["method"] = {**method, "version": "1", "options": m_options, "config": config, "checkpoint_id": checkpoint_id}
    bench.pop("protocol", None)
    out["benchmark"] = {**bench, "options": p_options, "facts": facts, "warnings": warnings}
    out["skipped"] = {**skipped, "missing_images_sha256": None}
    return out


def _rankings_file(result: RunResult, path: Path | None = None) -> Path:
    """The rankings file beside a result; its recorded name must be a plain file name (no folder)."""
    name = str(result.rankings_file)
    base = Path(path if path is not None else result.path)  # type: ignore[arg-type]
    if not name or Path(name).name != name or name in (".", ".."):
        raise IntegrityError(f"{base}: rankings_file {name!r} is not a file name beside the result; {RESULT_FIX}")
    return base.with_name(name)


def check_rankings(result: RunResult) -> Path:
    """The path of a result's rankings file after checking its bytes against the sha256 the result records (legacy
    results: not checked); ``IntegrityError`` when it is missing, damaged or edited."""
    if result.path is None or not result.rankings_file:
        raise ResultError(f"run {result.run_key} has no stored rankings; re-run the evaluation")
    path = _rankings_file(result)
    if result.rankings_sha256 is not None:
        check_file(path, result.rankings_sha256, f"stored rankings of run {result.run_key}", RANKINGS_FIX)
    return path


def load_rankings(result: RunResult) -> dict[str, Any]:
    """A result's stored rankings, verified against the sha256 the result records (legacy results: read as is)."""
    path = check_rankings(result)
    try:
        raw = read_json(path)
    except (OSError, ValueError) as error:
        why = " ".join(str(error).split())[:160]
        raise IntegrityError(f"{path}: cannot read the stored rankings ({why}); {RANKINGS_FIX}") from error
    if not isinstance(raw, dict) or not isinstance(raw.get("top"), dict):
        raise IntegrityError(f"{path}: the stored rankings have no 'top' mapping; {RANKINGS_FIX}")
    return raw


def result_files(results_dir: Path) -> list[Path]:
    return sorted((Path(results_dir) / "runs").glob("*/*/*.json"))


def iter_results(results_dir: Path) -> Iterator[RunResult]:
    """Every result under ``results_dir/runs`` in a deterministic order; one run in two files (a copy) is refused."""
    seen: dict[str, Path] = {}
    for path in result_files(results_dir):
        result = read_result(path)
        if result.run_key in seen:
            raise ResultError(f"{seen[result.run_key]} and {path} hold the same run {result.run_key}: remove the copy")
        seen[result.run_key] = path
        yield result


def run_prefix(run: str) -> str:
    """A run key prefix, never empty (an empty one would match every run)."""
    if not run.strip():
        raise ResultError(f"no run given ({run!r}): give a run key (a unique prefix is enough) or a result file")
    return run.strip()


def find_result(results_dir: Path, run: str) -> RunResult:
    """A result by file path or run key (prefix allowed when unique)."""
    path = Path(run)
    if run and path.is_file():
        return read_result(path)
    run = run_prefix(run)
    matches = [r for r in iter_results(results_dir) if r.run_key.startswith(run)]
    if len(matches) != 1:
        found = "no result" if not matches else f"{len(matches)} results"
        raise ResultError(f"{found} with run key {run!r} under {Path(results_dir) / 'runs'}")
    return matches[0]
