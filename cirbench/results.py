"""Result files: one JSON per run, named by a key that hashes everything that changes the numbers.

Layout (under the results folder, ``./results`` by default)::

    runs/<benchmark>/<split>/<method>--<backbone>--<key>.json            metrics, protocol, timings, environment
    runs/<benchmark>/<split>/<method>--<backbone>--<key>.rankings.json.gz  top-50 per query (+ CIRR subset)

The run key covers method config (prompts, options, checkpoint hash), backbone and weights, preprocessing,
benchmark, split, protocol options and version, annotation checksums and whether missing images were
skipped — and nothing else (batch size, device and worker count are recorded but not keyed).
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cirbench import __version__
from cirbench.io import atomic_write_json, atomic_write_json_gz, read_json

SCHEMA_VERSION = 1
DEFAULT_RESULTS_DIR = Path("results")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def run_key(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()[:12]


def files_sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_")[:60]


def result_path(results_dir: Path, benchmark: str, split: str, method: str, backbone: str, key: str) -> Path:
    name = f"{slug(method)}--{slug(Path(backbone).name if '/' in backbone else backbone)}--{key}.json"
    return Path(results_dir) / "runs" / benchmark / split / name


def rankings_path(result_file: Path) -> Path:
    return result_file.with_name(result_file.name[: -len(".json")] + ".rankings.json.gz")


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


def save_result(result_file: Path, result: dict[str, Any], rankings: dict[str, Any] | None) -> None:
    """Rankings first, then the result: a result file on disk always has its rankings beside it."""
    if rankings is not None:
        atomic_write_json_gz(rankings_path(result_file), rankings)
        result["rankings_file"] = rankings_path(result_file).name
    atomic_write_json(result_file, result)


def load_result(path: Path) -> dict[str, Any]:
    result = read_json(path)
    if not isinstance(result, dict) or "schema_version" not in result:
        raise ValueError(f"{path} is not a cirbench result file (no schema_version)")
    if result["schema_version"] > SCHEMA_VERSION:
        raise ValueError(f"{path} has schema_version {result['schema_version']}; upgrade cirbench to read it")
    result["_path"] = str(path)
    return result


def load_rankings(result: dict[str, Any]) -> dict[str, Any]:
    path = Path(result["_path"]).with_name(result["rankings_file"])
    return read_json(path)


def iter_results(results_dir: Path) -> Iterator[dict[str, Any]]:
    """Every result file under ``results_dir/runs`` in a deterministic order."""
    for path in sorted((Path(results_dir) / "runs").glob("*/*/*.json")):
        yield load_result(path)


def find_result(results_dir: Path, run: str) -> dict[str, Any]:
    """A result by file path or run key (prefix allowed when unique)."""
    path = Path(run)
    if path.is_file():
        return load_result(path)
    matches = [r for r in iter_results(results_dir) if r["run_key"].startswith(run)]
    if len(matches) != 1:
        found = "no result" if not matches else f"{len(matches)} results"
        raise FileNotFoundError(f"{found} with run key {run!r} under {Path(results_dir) / 'runs'}")
    return matches[0]


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
