"""Schema 1 -> schema 2 result files (``cirbench results migrate``).

Schema 1 (cirbench 0.1) hashed derived facts and explanatory text into its run keys (a GeneCIS tie-rule sentence,
CIRCO's gallery warnings, mapper descriptions, the checkpoint's training step). Schema 2 hashes user options and
identities only, so a schema-1 file gets a new key. Everything the new key needs is in the old file: the method's
options are its declared options read from the old ``method.config``, the protocol's are the benchmark's declared
options read from the old ``benchmark.protocol``, and the rest (facts) is kept unhashed.

One case cannot be recovered: which images a ``--skip-missing`` run left out (schema 1 stored only the first five).
Such a run's key gets ``missing_images = "v1:<old key>"``, so it is kept but never reused for a new run.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cirbench.errors import ResultError
from cirbench.io import atomic_write_json, atomic_write_json_gz, read_json
from cirbench.runkey import make_key_fields, run_key


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


@dataclass
class Migration:
    old: Path
    new: Path
    old_key: str
    new_key: str


def migrate(results_dir: Path, dry_run: bool = False) -> list[Migration]:
    """Rewrite every schema-1 result under ``results_dir/runs`` (and its rankings) as schema 2 under its new key.

    The new files are written (atomically) before the old ones are removed, so an interruption leaves both, never
    neither; running it again finishes the job. Where a schema-2 result already holds the new key (the same run,
    evaluated again by the current cirbench), it is kept and the old file removed.
    """
    done = []
    for path in sorted((Path(results_dir) / "runs").glob("*/*/*.json")):
        try:
            raw = read_json(path)
        except (OSError, ValueError) as error:
            raise ResultError(
                f"{path}: cannot read the result file ({error}); move it away and migrate again"
            ) from error
        if not isinstance(raw, dict) or raw.get("schema_version") != 1:
            continue
        record = upgrade_v1(raw)
        old_key, new_key = record["migrated_from"]["run_key"], record["run_key"]
        new_path = path.with_name(path.name.replace(old_key, new_key)) if old_key in path.name else path
        done.append(Migration(path, new_path, old_key, new_key))
        if dry_run:
            continue
        if new_path != path and new_path.is_file():  # the same run already written by the current cirbench
            path.unlink()
            if raw.get("rankings_file"):
                with contextlib.suppress(FileNotFoundError):
                    path.with_name(raw["rankings_file"]).unlink()
            continue
        old_rankings = path.with_name(raw["rankings_file"]) if raw.get("rankings_file") else None
        if old_rankings is not None and old_rankings.is_file():
            new_rankings = new_path.with_name(new_path.name[: -len(".json")] + ".rankings.json.gz")
            atomic_write_json_gz(new_rankings, read_json(old_rankings))
            record["rankings_file"] = new_rankings.name
        atomic_write_json(new_path, record)
        if new_path != path:
            path.unlink()
            if old_rankings is not None and old_rankings.name != record.get("rankings_file"):
                with contextlib.suppress(FileNotFoundError):
                    old_rankings.unlink()
    return done
