"""Result files: one typed ``RunResult`` per run, named by a key that hashes everything that changes the numbers.

Layout (under the results folder, ``./results`` by default)::

    runs/<benchmark>/<split>/<method>--<backbone>--<key>.json            metrics, protocol, timings, environment
    runs/<benchmark>/<split>/<method>--<backbone>--<key>.rankings.json.gz  top-50 per query (+ CIRR subset)

A result stores ``key_fields``, the exact payload its run key hashes (user options and identities only), beside the
facts and settings that are recorded but not hashed. Schema 2 is written; schema 1 files (cirbench 0.1, whose keys
also hashed derived facts) are read by ``read_result`` and rewritten as schema 2 by ``cirbench results migrate``.
"""

from __future__ import annotations

import platform
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cirbench import __version__
from cirbench.errors import ResultError
from cirbench.io import atomic_write_json, atomic_write_json_gz, read_json
from cirbench.runkey import make_key_fields, run_key

SCHEMA_VERSION = 2
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
    """One evaluation's record (schema 2)."""

    model_config = ConfigDict(extra="allow")

    schema_version: Literal[2] = SCHEMA_VERSION
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
    """Rankings first, then the result: a result file on disk always has its rankings beside it."""
    if rankings is not None:
        atomic_write_json_gz(rankings_path(path), rankings)
        result.rankings_file = rankings_path(path).name
    atomic_write_json(path, result.model_dump(mode="json"))
    result.path = Path(path)
    return result


def read_raw(path: Path, fix: str = "delete it or rerun with --overwrite") -> Any:
    """The parsed JSON of a result file; an unreadable one is a ``ResultError`` naming it."""
    try:
        return read_json(path)
    except (OSError, ValueError) as error:
        raise ResultError(f"{path}: cannot read the result file ({error}); {fix}") from error


def read_result(path: Path) -> RunResult:
    """A result file of any schema written so far (schema 1 is converted in memory, keeping its old run key)."""
    path = Path(path)
    raw = read_raw(path)
    if not isinstance(raw, dict) or "schema_version" not in raw:
        raise ResultError(f"{path} is not a cirbench result file (no schema_version)")
    version = raw["schema_version"]
    if version == 1:
        raw = upgrade_v1(raw, keep_key=True)
    elif version != SCHEMA_VERSION:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        fix = "upgrade cirbench to read it" if newer else "it was not written by cirbench"
        raise ResultError(f"{path} has schema_version {version!r}; {fix}")
    try:
        result = RunResult.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ResultError(f"{path}: field {where}: {first['msg']}; the file is damaged or edited") from error
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


def load_rankings(result: RunResult) -> dict[str, Any]:
    if result.path is None or not result.rankings_file:
        raise ResultError(f"run {result.run_key} has no stored rankings; re-run the evaluation")
    path = result.path.with_name(result.rankings_file)
    try:
        return read_json(path)
    except (OSError, ValueError) as error:
        raise ResultError(f"{path}: cannot read the stored rankings ({error}); re-run with --overwrite") from error


def result_files(results_dir: Path) -> list[Path]:
    return sorted((Path(results_dir) / "runs").glob("*/*/*.json"))


def iter_results(results_dir: Path) -> Iterator[RunResult]:
    """Every result file under ``results_dir/runs`` in a deterministic order."""
    for path in result_files(results_dir):
        yield read_result(path)


def find_result(results_dir: Path, run: str) -> RunResult:
    """A result by file path or run key (prefix allowed when unique)."""
    path = Path(run)
    if path.is_file():
        return read_result(path)
    matches = [r for r in iter_results(results_dir) if r.run_key.startswith(run)]
    if len(matches) != 1:
        found = "no result" if not matches else f"{len(matches)} results"
        raise ResultError(f"{found} with run key {run!r} under {Path(results_dir) / 'runs'}")
    return matches[0]
