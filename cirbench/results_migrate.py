"""``cirbench results migrate``: bring result files of an older schema to the current one (schema 3, sealed).

* Schema 2 (unsealed): sealed in place, same key and file; the only change is ``schema_version`` 2 -> 3 and the two
  fields added at the end (``rankings_sha256``, ``digest``). The record is validated first and its rankings file
  read, so a damaged file is refused rather than sealed.
* Schema 1 (cirbench 0.1) hashed derived facts and explanatory text into its run keys (a GeneCIS tie-rule sentence,
  CIRCO's gallery warnings, mapper descriptions, the checkpoint's training step); schema 2 and 3 hash user options
  and identities only, so each such file gets a new key. How an old record is read is ``cirbench.results.upgrade_v1``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cirbench.errors import IntegrityError
from cirbench.integrity import file_sha256, seal_json
from cirbench.io import atomic_write_json, atomic_write_json_gz, read_json
from cirbench.results import SCHEMA_VERSION, RunResult, checked_raw, read_raw, upgrade_v1

MIGRATE_FIX = "move it away and migrate again"


@dataclass
class Migration:
    old: Path
    new: Path
    old_key: str
    new_key: str
    sealed_only: bool = False  # a schema-2 file sealed in place


def migrate(results_dir: Path, dry_run: bool = False) -> list[Migration]:
    """Seal every schema-2 result under ``results_dir/runs`` in place, and rewrite every schema-1 result (and its
    rankings) as schema 3 under its new key.

    The new files are written (atomically) before the old ones are removed, so an interruption leaves both, never
    neither; running it again finishes the job. Where a result already holds a schema-1 file's new key (the same run,
    evaluated again by the current cirbench), it is kept and the old file removed.
    """
    done = []
    for path in sorted((Path(results_dir) / "runs").glob("*/*/*.json")):
        raw = read_raw(path, MIGRATE_FIX)
        version = raw.get("schema_version") if isinstance(raw, dict) else None
        if isinstance(version, bool):  # True == 1 in Python: not a schema
            continue
        if version == 2:
            checked_raw(path, raw, note=False)  # refuses a schema-2 file carrying digest fields (edited)
            done.append(Migration(path, path, str(raw.get("run_key")), str(raw.get("run_key")), sealed_only=True))
            if not dry_run:
                atomic_write_json(path, _sealed(path, {**raw, "schema_version": SCHEMA_VERSION}))
            continue
        if version != 1:
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
        elif old_rankings is not None:
            record["rankings_file"] = None  # named but absent: the sealed record must not promise it
        atomic_write_json(new_path, _sealed(new_path, {**record, "schema_version": SCHEMA_VERSION}))
        if new_path != path:
            path.unlink()
            if old_rankings is not None and old_rankings.name != record.get("rankings_file"):
                with contextlib.suppress(FileNotFoundError):
                    old_rankings.unlink()
    return done


def _sealed(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` validated as a result, with its rankings' sha256 and its digest added (a record that does not
    validate, or whose rankings do not read, is refused naming the file: sealing must never bless damage)."""
    try:
        RunResult.model_validate(record)
    except ValueError as error:
        raise IntegrityError(
            f"{path}: not a valid result ({' '.join(str(error).split())[:160]}); {MIGRATE_FIX}"
        ) from error
    name = record.get("rankings_file")
    sha = None
    if name:
        rankings = path.with_name(Path(str(name)).name)
        try:
            if not isinstance(read_json(rankings).get("top"), dict):
                raise ValueError("no 'top' mapping")
        except (OSError, ValueError, AttributeError) as error:
            why = " ".join(str(error).split())[:160]
            raise IntegrityError(f"{rankings}: cannot read the stored rankings ({why}); {MIGRATE_FIX}") from error
        sha = file_sha256(rankings)
    return seal_json({**{k: v for k, v in record.items() if k != "digest"}, "rankings_sha256": sha})
